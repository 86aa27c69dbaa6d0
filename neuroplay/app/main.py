"""The window: a start menu, the playing screen for every mode, settings and the train launcher.

This module reads events, hands keys and commands to the session (through `Stepper`, off the UI
thread) and draws; it decides nothing about the game. A fixed-rate loop (`pygame.time.Clock`) runs at
`--fps`; each tick reads input and redraws even when the model has not finished the next frame yet.
`--fps 0` runs unthrottled and steps in the UI thread (benchmarks and deterministic tests).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pygame

from neuroplay.app import draw
from neuroplay.app.catalog import find_checkpoints, find_datasets, resolve_checkpoint
from neuroplay.app.runner import Command, FrameStats, SessionLoader, Stepper
from neuroplay.app.screen import draw_play
from neuroplay.app.train_screen import TrainScreen
from neuroplay.app.video import VideoWriter, save_png, stamp_path
from neuroplay.app.widgets import KeyScript, Row, RowsScreen, cycle_index
from neuroplay.errors import SetupError, UsageError
from neuroplay.models.decoding import DecodeConfig
from neuroplay.session import Keys, Session, open_session

if TYPE_CHECKING:
    from neuroplay.play_cli import PlayConfig

HELP = [
    "Left/Right or A/D: move      Space: fire      (no key: NOOP)",
    "P: pause   R: restart   Y: re-anchor the dream on the real game",
    "T: autopilot (ball tracker) on/off",
    "S: screenshot (PNG)   V: start/stop video (GIF/MP4: Settings)",
    "Replay: Left/Right frame, Up/Down 30 frames, PgUp/PgDn episode,",
    "        Space play/stop, click the bar to scrub, B: branch the dream here",
    "F1: this help        Esc: back (to the menu)",
]
PANELS = {"dream": 1, "real": 1, "record": 1, "compare": 3, "replay": 2}
BOTTOM = {"compare": 120, "replay": 40}


class App:
    """One window for the whole game; `run()` until quit (or `--frames` ticks)."""

    def __init__(self, cfg: PlayConfig) -> None:
        self.cfg = cfg
        if cfg.headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        try:
            pygame.display.init()
            pygame.font.init()
            driver = pygame.display.get_driver()
            if not cfg.headless and driver in ("offscreen", "dummy") and os.environ.get("SDL_VIDEODRIVER") != driver:
                raise pygame.error(f"SDL found no screen, only its {driver!r} driver")
            info = pygame.display.Info()
            desk = info.current_h
            self.desk_w = 0 if cfg.headless else max(info.current_w, 0)
            self.scale = cfg.scale or (4 if cfg.headless or desk <= 0 else int(np.clip((desk - 220) // 84, 2, 8)))
            self.screen = pygame.display.set_mode(self._size(cfg.mode), pygame.RESIZABLE)
        except pygame.error as e:
            pygame.quit()
            raise SetupError(f"no display available ({e}); run with --headless, or set DISPLAY "
                               "(e.g. under Xvfb: xvfb-run neuroplay play)") from e
        pygame.display.set_caption("neuroplay - Breakout dreamed by a world model")
        self.fonts = draw.fonts()
        self.clock = pygame.time.Clock()
        self.fps = cfg.fps
        self.autopilot, self.device = cfg.autopilot, cfg.device
        self.decode = DecodeConfig(cfg.decode, cfg.temperature, cfg.confident)
        self.decoders = [DecodeConfig(m, cfg.temperature, cfg.confident) for m in ("argmax", "coupled", "sample")]
        """What the settings' "sampling" row cycles through (the user's temperature and threshold kept)."""
        self.video_format = cfg.video_format
        self.checkpoint = cfg.checkpoint
        self.replay_file = cfg.file
        self.where = "menu"
        self.session: Session | None = None
        self.stepper: Stepper | None = None
        self.held: set[int] = set()
        self.tapped: set[int] = set()
        """Keys pressed since the last frame was submitted: a tap shorter than a tick still acts once."""
        self.cmds: list[Command] = []
        self.help = False
        self.loader: SessionLoader | None = None
        """The session being built off the UI thread (the "loading" screen)."""
        self.video: VideoWriter | None = None
        """The V key's video."""
        self.cli_video: VideoWriter | None = None
        """--video: the whole run."""
        self.stats = FrameStats(cfg.fps)
        self.draw_s = 0.005
        """Running mean of the time from the end of the frame wait to the end of the tick's work (seconds)."""
        self.wait_end: float | None = None
        self.script = KeyScript(cfg.keys)
        self.tick_no, self.quit, self.exit_code = 0, False, 0
        self.notice, self.toast, self.toast_until = "", "", 0.0
        self.scrub_rect: pygame.Rect | None = None
        self.menu = RowsScreen("neuroplay: Breakout, dreamed", [
            Row("Play the dream", enter=lambda: self.open_mode("dream")),
            Row("Play the real game", enter=lambda: self.open_mode("real")),
            Row("Compare dream and real, side by side", enter=lambda: self.open_mode("compare")),
            Row(f"Record human play to {cfg.out}", enter=lambda: self.open_mode("record")),
            Row("Replay and branch", lambda: self.replay_file or "no file found", self._cycle_replay,
                lambda: self.open_mode("replay")),
            Row("Train a model", enter=lambda: self._goto("train")),
            Row("Settings", enter=lambda: self._goto("settings")),
            Row("Quit", enter=self._quit),
        ], ["Up/Down + Enter or the mouse; Esc quits.", "In a game: F1 help, Esc back here."])
        self.settings = RowsScreen("Settings", [
            Row("checkpoint", lambda: self.checkpoint or "bundled lite", self._cycle_checkpoint),
            Row("window scale", lambda: str(self.scale), lambda d: self._set_scale(self.scale + d)),
            Row("FPS", lambda: str(self.fps), lambda d: self._cycle("fps", [5.0, 10.0, 15.0, 20.0, 30.0, 60.0], d)),
            Row("sampling", lambda: self.decode.label(), lambda d: self._cycle("decode", self.decoders, d)),
            Row("autopilot at start", lambda: self.autopilot, lambda d: self._cycle("autopilot",
                                                                                    ["off", "tracker", "random"], d)),
            Row("device", lambda: self.device, lambda d: self._cycle("device", ["auto", "cpu", "cuda"], d)),
            Row("video (V) format", lambda: self.video_format,
                lambda d: self._cycle("video_format", ["gif", "mp4"], d)),
            Row("Back", enter=lambda: self._goto("menu")),
        ], ["Left/Right change a value; it applies to the next game."])
        self.train = TrainScreen([cfg.file, cfg.out], on_back=lambda: self._goto("menu"),
                                 on_play=self._play_checkpoint, device=lambda: self.device)

    # ------------------------------------------------------------------ setup helpers
    def _size(self, mode: str) -> tuple[int, int]:
        """The window for `mode` at the chosen scale, smaller where the screen is too narrow for its panels
        (compare's three panels at scale 6 are 1442 px wide); the frames then scale to the window."""
        panels, bottom = PANELS.get(mode, 1), BOTTOM.get(mode, 0)
        scale = self.scale
        while scale > 2 and 0 < self.desk_w < draw.window_size(scale, panels, bottom)[0] + 40:
            scale -= 1
        w, h = draw.window_size(scale, panels, bottom)
        return max(w, 720), max(h, 560)

    def _goto(self, where: str) -> None:
        self.where = where

    def _quit(self) -> None:
        self.quit = True

    def _cycle(self, attr: str, options: list, d: int) -> None:
        setattr(self, attr, options[cycle_index(options, getattr(self, attr), d)])

    def _cycle_checkpoint(self, d: int) -> None:
        options = [str(p) for p in find_checkpoints([self.checkpoint])] or [""]
        self.checkpoint = options[cycle_index(options, self.checkpoint, d)]

    def _cycle_replay(self, d: int) -> None:
        options = [str(p) for p in find_datasets([self.cfg.file, self.cfg.out])]
        if options:
            self.replay_file = options[cycle_index(options, self.replay_file, d)]

    def _set_scale(self, s: int) -> None:
        self.scale = int(np.clip(s, 1, 12))
        self.screen = pygame.display.set_mode(self._size(self.session.mode if self.session else "menu"),
                                              pygame.RESIZABLE)

    def _play_checkpoint(self, ckpt: Path) -> None:
        self.checkpoint = str(ckpt)
        self.open_mode("dream")

    def say(self, text: str) -> None:
        self.toast, self.toast_until = text, time.perf_counter() + 3.0

    # ------------------------------------------------------------------ sessions
    def open_mode(self, mode: str, from_cli: bool = False) -> None:
        """Start a game session; from the menu a failure is a notice, from the command line an error."""
        if mode == "replay" and not self.replay_file:
            self._cycle_replay(1)
        try:
            ckpt = resolve_checkpoint(self.checkpoint, required=mode in ("dream", "compare"))
            if mode == "replay" and not self.replay_file:
                raise UsageError("replay needs an episode file (neuroplay replay FILE, or record one first)")
        except Exception as e:
            if from_cli:
                raise
            self._cannot_start(mode, e)
            return

        def build() -> Session:
            return open_session(mode, ckpt, device=self.device, decode=self.decode,
                                compile=self.cfg.compile, seed=self.cfg.seed, out=self.cfg.out,
                                replay_file=self.replay_file or None, autopilot=self.autopilot, fps=self.fps)

        self.loader = SessionLoader(mode, build, threaded=self.fps > 0)
        self.where = "loading"
        if from_cli or self.fps <= 0:  # the command line (errors are its one line) and unpaced runs: wait here
            self._finish_loading(from_cli)

    def _finish_loading(self, from_cli: bool = False) -> None:
        """Enter the loaded session, or say why it could not start."""
        ld = self.loader
        assert ld is not None
        ld.wait()
        self.loader = None
        if ld.error is not None:
            if from_cli:
                raise ld.error
            self._cannot_start(ld.mode, ld.error)
            self.where = "menu"
            return
        assert ld.result is not None
        self.session, self.stepper = ld.result
        self.held.clear()
        self.tapped.clear()
        self.cmds, self.help, self.notice = [], False, ""
        self.screen = pygame.display.set_mode(self._size(ld.mode), pygame.RESIZABLE)
        self.where = "play"

    def _cannot_start(self, mode: str, e: BaseException) -> None:
        """The menu's notice: why `mode` did not start, in one line."""
        self.notice = f"cannot start {mode}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"

    def close_session(self) -> None:
        """Stop stepping and save what the session holds (a recording's episode under way too)."""
        if self.session is None:
            return
        if self.stepper is not None:
            self.stepper.close()
        ok = self.session.close()
        rec = self.session.recorder
        if rec is not None:
            self.notice = (f"recording: {rec.saved_episodes} episode(s) in {rec.path}" if ok
                           else f"RECORDING NOT SAVED: {rec.message}")
            if not ok:
                self.exit_code = 1
        self.session = self.stepper = None
        self.where = "menu"

    # ------------------------------------------------------------------ events
    def handle(self, e: pygame.event.Event) -> None:
        if e.type == pygame.QUIT:
            self.quit = True
        elif e.type == pygame.VIDEORESIZE:
            self.screen = pygame.display.get_surface()
        elif e.type == pygame.WINDOWFOCUSLOST:  # key-ups go to another window: do not leave keys stuck down
            self.held.clear()
        elif e.type == pygame.KEYDOWN and e.key == pygame.K_s:
            self.screenshot()
        elif self.where == "menu":
            if e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE:
                self.quit = True
            else:
                self.menu.handle(e)
        elif self.where == "settings":
            if e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE:
                self.where = "menu"
            else:
                self.settings.handle(e)
        elif self.where == "train":
            self.train.handle(e)
        elif self.where == "loading":
            if e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE and self.loader is not None:
                threading.Thread(target=self.loader.discard, daemon=True).start()
                self.loader, self.where = None, "menu"
        elif self.where == "play":
            self.handle_play(e)

    def handle_play(self, e: pygame.event.Event) -> None:
        s = self.session
        assert s is not None
        if e.type == pygame.KEYUP:
            self.held.discard(e.key)
        elif e.type == pygame.MOUSEBUTTONDOWN and e.button == 1 or (
                e.type == pygame.MOUSEMOTION and e.buttons[0]):
            r = self.scrub_rect
            if r is not None and r.inflate(0, 16).collidepoint(e.pos) and s.mode == "replay" and not s.branching:
                self.cmds.append(("seek", 0, (e.pos[0] - r.x) / max(r.w - 1, 1)))
        elif e.type == pygame.KEYDOWN:
            self.held.add(e.key)
            self.tapped.add(e.key)
            k, browsing = e.key, s.mode == "replay" and not s.branching
            simple = {pygame.K_p: "toggle_pause", pygame.K_r: "restart", pygame.K_y: "reanchor",
                      pygame.K_t: "toggle_autopilot", pygame.K_b: "branch"}
            if k == pygame.K_ESCAPE:
                if self.help:
                    self.help = False
                elif s.branching:
                    self.cmds.append(("unbranch",))
                else:
                    self.close_session()
            elif k == pygame.K_F1:
                self.help = not self.help
            elif k == pygame.K_v:
                self.toggle_video()
            elif browsing and k == pygame.K_SPACE:
                self.cmds.append(("toggle_play",))
            elif browsing and k in (pygame.K_UP, pygame.K_DOWN):
                self.cmds.append(("seek", 30 if k == pygame.K_DOWN else -30))
            elif browsing and k in (pygame.K_PAGEUP, pygame.K_PAGEDOWN):
                self.cmds.append(("next_episode", 1 if k == pygame.K_PAGEDOWN else -1))
            elif k in simple and (k != pygame.K_b or s.mode == "replay"):
                self.cmds.append((simple[k],))

    def keys(self) -> Keys:
        h = self.held | self.tapped
        return Keys(left=pygame.K_LEFT in h or pygame.K_a in h, right=pygame.K_RIGHT in h or pygame.K_d in h,
                    fire=pygame.K_SPACE in h)

    # ------------------------------------------------------------------ the loop
    def toggle_video(self) -> None:
        if self.video is not None:
            self.say(f"video saved: {self.video.close()}")
            self.video = None
        else:
            self.video = VideoWriter(stamp_path(self.cfg.shots_dir, "neuroplay", f".{self.video_format}"),
                                     self.fps or 15)
            self.say(f"recording video to {self.video.path} (V stops)")

    def screenshot(self) -> None:
        """S, on any screen: the window as it was last drawn, to a time-stamped PNG."""
        self.say(f"screenshot {save_png(stamp_path(self.cfg.shots_dir, 'neuroplay', '.png'), self.capture())}")

    def capture(self) -> np.ndarray:
        """The window as an (H, W, 3) uint8 array."""
        return pygame.surfarray.array3d(self.screen).swapaxes(0, 1).copy()

    def tick(self) -> None:
        t0 = time.perf_counter()
        for e in self.script.events(self.tick_no) + pygame.event.get():
            self.handle(e)
            if self.quit:
                return
        self.screen = pygame.display.get_surface()
        if self.where == "play" and self.session is not None:
            self.update_play(t0)
        elif self.where == "loading" and self.loader is not None:
            if self.loader.done:
                self._finish_loading()
            else:
                draw.loading(self.screen, self.fonts, self.loader.mode, self.loader.seconds)
        elif self.where == "settings":
            self.settings.draw(self.screen, self.fonts)
        elif self.where == "train":
            self.train.draw(self.screen, self.fonts)
        else:
            self.menu.draw(self.screen, self.fonts, self.notice + ("   (training in the background)"
                                                                   if self.train.running else ""))
        pygame.display.flip()
        for v in (self.video, self.cli_video):
            if v is not None:
                v.add(self.capture())
        if self.wait_end is not None:  # learn how long a shown frame costs, to know how long it may be awaited
            self.draw_s = 0.9 * self.draw_s + 0.1 * (time.perf_counter() - self.wait_end)
            self.wait_end = None
        if self.fps > 0:
            self.clock.tick(self.fps)
        self.tick_no += 1

    def update_play(self, t0: float) -> None:
        s, st = self.session, self.stepper
        assert s is not None and st is not None
        browsing = s.mode == "replay" and not s.branching
        if browsing:
            for key, d in ((pygame.K_LEFT, -1), (pygame.K_RIGHT, 1)):
                if key in self.held:
                    self.cmds.append(("seek", d))
        if st.submit(None if browsing else self.keys(), self.cmds):
            self.cmds, self.tapped = [], set()
        # Wait for this tick's frame as long as drawing it still fits in the tick (2 ms to spare).
        budget = 1.0 / self.fps - self.draw_s - 0.002 if self.fps > 0 else 0.0
        st.wait_frame(t0 + budget - time.perf_counter())
        self.wait_end = time.perf_counter()
        view, new = st.poll()
        self.stats.tick(new and view.stepped, st.pending and not s.paused, view.model_ms)
        self.scrub_rect = draw_play(self.screen, self.fonts, view, self.help, HELP,
                                    self.toast if time.perf_counter() < self.toast_until else "",
                                    self.video is not None, self.tick_no)

    def run(self) -> int:
        try:
            if self.cfg.mode != "menu":
                self.open_mode(self.cfg.mode, from_cli=True)
            if self.cfg.video:
                self.cli_video = VideoWriter(self.cfg.video, self.fps or 15)
            while not self.quit and not (self.cfg.frames and self.tick_no >= self.cfg.frames):
                self.tick()
        finally:
            self.shutdown()
        return self.exit_code

    def shutdown(self) -> None:
        """Save everything, whatever ended the loop (Esc, window close, --frames, Ctrl-C, an error)."""
        try:
            if self.loader is not None:
                self.loader.discard()
                self.loader = None
            self.close_session()
            if self.notice.startswith("RECORDING NOT SAVED"):
                print(f"neuroplay: {self.notice}")
            self.train.shutdown()
            for v in (self.video, self.cli_video):
                if v is not None:
                    print(f"video: {v.close()} ({v.frames} frames)")
            self.video = self.cli_video = None
            if self.cfg.stats:
                out = {"mode": self.cfg.mode, "checkpoint": self.checkpoint or "bundled", "device": self.device,
                       **self.stats.summary()}
                Path(self.cfg.stats).parent.mkdir(parents=True, exist_ok=True)
                Path(self.cfg.stats).write_text(json.dumps(out, indent=2) + "\n")
                print(f"stats: {json.dumps(self.stats.summary())}")
        finally:
            pygame.quit()
