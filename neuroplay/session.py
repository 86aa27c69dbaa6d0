"""The game's logic without a window: modes, environments, keys -> action, recording, metrics, replay.

The pygame app (`neuroplay/app/`) only turns events into `Keys` and commands, calls `step`, and draws
the returned `View`; everything that decides what happens lives here, so it is tested headless and
the same code drives the window, the `--headless` benchmark and the tests.

Modes: `dream` (the world model's Breakout; a real emulator runs in the shadow with the same actions so
`reanchor` can hand the dream the real game's last 4 frames), `real`, `compare` (both, side by side,
with per-frame token accuracy / PSNR and a difference map), `record` (real game written to a dataset
file, see `Recorder`) and `replay` (browse an episode file; `branch` lets the dream continue from any
frame while the recorded continuation plays beside it).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroplay.config import ACTION_NAMES, HISTORY, START_FRAMES, Action
from neuroplay.data.episodes import Episodes
from neuroplay.envs.dream import DreamEnv
from neuroplay.envs.players import RandomPolicy, TrackerPolicy
from neuroplay.envs.real import MAX_EPISODE_STEPS, RealEnv
from neuroplay.errors import SetupError, UsageError
from neuroplay.models.decoding import DecodeConfig
from neuroplay.psnr import frame_psnr
from neuroplay.recorder import Recorder

MODES = ("dream", "real", "compare", "record", "replay")
NOOP, FIRE, RIGHT, LEFT = (int(a) for a in Action)
"""PSNR of identical frames (instead of inf, so curves and JSON stay finite)."""
CURVE_LEN = 300
"""Frames kept in the compare mode's running plot (20 s at 15 FPS)."""


@dataclass
class Keys:
    """Which game keys are held this frame."""

    left: bool = False
    right: bool = False
    fire: bool = False


def keys_to_action(keys: Keys) -> int:
    """Held keys -> Breakout action. Fire wins (it only matters to launch the ball); left+right cancel."""
    if keys.fire:
        return FIRE
    if keys.left != keys.right:
        return LEFT if keys.left else RIGHT
    return NOOP


def token_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal token ids."""
    return float(np.mean(np.asarray(a).reshape(-1) == np.asarray(b).reshape(-1)))


def diff_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: mean absolute channel difference, the compare mode's heat map."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(-1) / 255.0).astype(np.float32)


@dataclass
class View:
    """Everything the window draws for one frame."""

    panels: list[tuple[str, np.ndarray]]
    """(title, (84, 64, 3) uint8 frame), drawn left to right."""
    hud: dict[str, str]
    """Ordered label -> value lines."""
    heat: np.ndarray | None = None
    """Compare: (84, 64) float32 difference in [0, 1]."""
    curves: dict[str, list[float]] = field(default_factory=dict)
    """Compare: running per-frame token accuracy ('acc', 0..1) and PSNR ('psnr', dB)."""
    scrub: tuple[int, int] | None = None
    """Replay: (frame index, frames in the episode)."""
    rec: bool = False
    """Show the red REC mark."""
    message: str = ""
    stepped: bool = False
    """A new game frame was produced (False while paused or browsing)."""
    model_ms: float = 0.0


class Session:
    """One playing session in one mode; `step(keys)` advances it by one frame and returns a `View`."""

    def __init__(self, mode: str = "dream", dream: DreamEnv | None = None, *, seed: int = 0,
                 record_to: str | Path | None = None, episodes: Episodes | None = None,
                 autopilot: str = "off", fps: float = 15.0, max_steps: int = MAX_EPISODE_STEPS,
                 write_behind: bool = False) -> None:
        if mode not in MODES:
            raise UsageError(f"--mode: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode in ("dream", "compare") and dream is None:
            raise UsageError(f"{mode} mode needs a world model checkpoint")
        if mode == "record" and record_to is None:
            raise UsageError("record mode needs --out FILE")
        if mode == "replay":
            if episodes is None:
                raise UsageError("replay mode needs an episode file")
            if episodes.frames is None and dream is None:
                raise UsageError("this file holds tokens; replaying it needs --checkpoint with its VQ-VAE")
        self.mode, self.dream, self.seed, self.fps = mode, dream, seed, fps
        self.real: RealEnv | None = None
        self.no_emulator = ""
        """Why no emulator runs in dream mode ('' when one does): the dream then starts from START_FRAMES."""
        if mode != "replay":
            try:
                self.real = RealEnv(seed, max_steps=max_steps)
            except SetupError as e:  # no ROM: only the dream can do without the emulator
                if mode != "dream" or not START_FRAMES.is_file():
                    raise
                self.no_emulator = str(e)
        self.recorder = (Recorder(record_to, write_behind=write_behind)
                         if mode == "record" and record_to is not None else None)
        self._saved_seen = 0
        self.episodes = episodes
        self.real_frames: deque[np.ndarray] = deque(maxlen=HISTORY)
        self.real_actions: deque[int] = deque(maxlen=HISTORY - 1)
        """Actions taken at `real_frames` but the last (a fused world model conditions each frame on its own)."""
        self.frame = np.zeros((84, 64, 3), np.uint8)
        self.real_frame: np.ndarray | None = None
        self.action, self.paused = NOOP, False
        self.autopilot = "off"
        self.policy: TrackerPolicy | RandomPolicy | None = None
        self.set_autopilot(autopilot)
        self.model_ms, self.changed, self.steps = 0.0, 0, 0
        self.step_times: deque[float] = deque(maxlen=31)
        self.curves: dict[str, deque[float]] = {"acc": deque(maxlen=CURVE_LEN), "psnr": deque(maxlen=CURVE_LEN)}
        self.heat: np.ndarray | None = None
        self.message, self._message_until = "", 0.0
        self.ep, self.cursor, self.playing, self.branch_at, self.branch_t = 0, 0, False, -1, 0
        self.episode_return = 0.0
        self.restart()
        if self.no_emulator:
            self.say(f"no emulator ({self.no_emulator}): the dream starts from the bundled frames", 8.0)

    # ------------------------------------------------------------------ commands
    def restart(self) -> None:
        """New game: the real emulator from its reset, the dream from that game's first frames."""
        if self.mode == "replay":
            self.unbranch()
            self.cursor = 0
            return
        if self.real is None:  # dream without an emulator: its first history is the bundled start frames
            self.real_frames.clear()
            self.real_actions.clear()  # the start frames are the reset screen and NOOPs
            self.real_frames.extend(Episodes.load(START_FRAMES).episode(0).frames[-HISTORY:])
            self.reanchor(quiet=True)
            return
        if self.recorder is not None and self.recorder.episode_frames:  # R mid-episode: keep what was played
            self.recorder.finish_episode()
        seed = self.seed + (self.recorder.episodes if self.recorder else 0)
        self.real_frames.clear()
        self.real_actions.clear()
        self.real_frames.append(self.real.reset(seed=seed))
        if self.recorder is not None:
            self.recorder.start(self.real_frames[-1], seed)
        if self.mode in ("dream", "compare"):  # warm-up NOOPs give the model a full 4-frame history
            while len(self.real_frames) < HISTORY:
                self.real_frames.append(self.real.step(NOOP).frame)
                self.real_actions.append(NOOP)
            self.reanchor(quiet=True)
        self.real_frame = self.real_frames[-1]
        self.frame = self.real_frame if self.mode in ("real", "record") else self.frame
        self.curves["acc"].clear()
        self.curves["psnr"].clear()
        self.episode_return = 0.0
        if self.policy is not None:
            self.policy.reset()

    def reanchor(self, quiet: bool = False) -> None:
        """Give the dream the real game's last frames as history (drift gone, dream resynchronised)."""
        if self.dream is None:
            return
        if self.mode == "replay":
            if self.branch_at >= 0:
                self.branch(self.branch_at + self.branch_t)
            return
        self.frame = self.dream.reset(np.stack(list(self.real_frames)), actions=list(self.real_actions))
        self.changed = 0
        if not quiet:
            self.say("re-anchored on the real game")

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.step_times.clear()  # the pause is not a slow frame

    def set_autopilot(self, kind: str) -> None:
        """'off', 'tracker' (the ball-tracking player) or 'random' (held random keys)."""
        if kind not in ("off", "tracker", "random"):
            raise UsageError(f"--autopilot: unknown {kind!r} (off, tracker, random)")
        self.autopilot = kind
        self.policy = (TrackerPolicy(noise=0.03, seed=self.seed) if kind == "tracker"
                       else RandomPolicy(self.seed, hold_max=8) if kind == "random" else None)

    def toggle_autopilot(self) -> None:
        self.set_autopilot("off" if self.autopilot != "off" else "tracker")
        self.say(f"autopilot {self.autopilot}")

    def say(self, text: str, seconds: float = 3.0) -> None:
        """A transient message for the screen."""
        self.message, self._message_until = text, time.perf_counter() + seconds

    # ------------------------------------------------------------------ replay
    @property
    def branching(self) -> bool:
        return self.branch_at >= 0

    def _episode(self) -> Episodes:
        assert self.episodes is not None
        return self.episodes.episode(self.ep)

    def replay_frame(self, i: int) -> np.ndarray:
        """Frame i of the current episode (decoded by the VQ-VAE for a token file)."""
        e = self._episode()
        i = int(np.clip(i, 0, len(e.images) - 1))
        if e.frames is not None:
            return np.asarray(e.frames[i])
        assert self.dream is not None and e.tokens is not None
        return self.dream.decode(np.asarray(e.tokens[i : i + 1]))[0]

    def seek(self, delta: int = 0, to: float | None = None) -> None:
        """Move the replay cursor by `delta` frames, or to a fraction `to` of the episode (scrub bar)."""
        n = len(self._episode().images)
        self.cursor = int(round(to * (n - 1))) if to is not None else self.cursor + delta
        self.cursor = int(np.clip(self.cursor, 0, n - 1))

    def next_episode(self, delta: int) -> None:
        assert self.episodes is not None
        self.ep = (self.ep + delta) % self.episodes.n_episodes
        self.unbranch()
        self.cursor = 0

    def toggle_play(self) -> None:
        self.playing = not self.playing

    def branch(self, at: int | None = None) -> None:
        """Let the dream take over from frame `at` (default: the cursor), with that frame's real history."""
        if self.dream is None:
            self.say("branching needs a world model (--checkpoint)")
            return
        e = self._episode()
        at = int(np.clip(self.cursor if at is None else at, 0, len(e.images) - 1))
        lo = max(0, at - HISTORY + 1)
        acts = np.asarray(e.actions[lo:at])  # taken at frames lo..at-1
        if e.frames is not None:
            self.frame = self.dream.reset(np.asarray(e.frames[lo : at + 1]), actions=acts)
        else:
            assert e.tokens is not None
            self.frame = self.dream.reset(tokens=np.asarray(e.tokens[lo : at + 1]), actions=acts)
        self.branch_at, self.branch_t, self.playing, self.cursor = at, 0, False, at
        self.say(f"branched at frame {at}: you play, the recording continues on the right")

    def unbranch(self) -> None:
        self.branch_at, self.branch_t = -1, 0

    # ------------------------------------------------------------------ the frame step
    def step(self, keys: Keys | None = None) -> View:
        """Advance one frame with the player's keys (ignored while the autopilot plays)."""
        stepped = False
        if self.mode == "replay" and not self.branching:
            if self.playing and not self.paused:
                before = self.cursor
                self.seek(1)
                stepped = self.cursor != before
                self.playing = stepped
        elif not self.paused:
            shown = self.frame
            self.action = self.policy.act(shown) if self.policy is not None else keys_to_action(keys or Keys())
            self._advance(self.action)
            stepped = True
        if stepped:
            self.steps += 1
            self.step_times.append(time.perf_counter())
        return self.view(stepped)

    def _advance(self, action: int) -> None:
        t0 = time.perf_counter()
        if self.dream is not None and (self.mode in ("dream", "compare") or self.branching):
            assert self.dream is not None
            d = self.dream.step(action)
            self.frame, self.changed = d.frame, int(d.info["changed_tokens"])
            self.model_ms = float(d.info["timings_ms"]["total"])
            if d.info.get("served"):
                self.say("the dream was slow to serve: it took its most likely serve")
            if self.branching:
                self.branch_t += 1
            if d.info.get("game_over") or d.info.get("stalled"):
                why = "game over in the dream" if d.info.get("game_over") else "the dream would not serve"
                if self.mode == "dream":  # as the real game does: a new game
                    self.say(f"{why}, new game")
                    self.restart()
                    return
                self.reanchor(quiet=True)
                self.say(f"{why}: re-anchored on the {'recording' if self.branching else 'real game'}")
            if self.branching:
                return
            dream_tokens = d.info["tokens"]
        if self.real is None:
            return
        r = self.real.step(action)
        self.real_frames.append(r.frame)
        self.real_actions.append(action)
        self.real_frame = r.frame
        self.episode_return += r.reward
        if self.mode in ("real", "record"):
            self.frame = r.frame
            self.model_ms = (time.perf_counter() - t0) * 1e3
        if self.recorder is not None:
            self.recorder.add(action, r.frame, r.reward, r.done, assisted=self.policy is not None)
            if self.recorder.saved_episodes > self._saved_seen:  # now, or by the writer thread since
                self._saved_seen = self.recorder.saved_episodes
                self.say(f"episode {self._saved_seen} saved to {self.recorder.path}")
        if self.mode == "compare":
            assert self.dream is not None
            real_tokens = self.dream.encode(r.frame[None])[0]
            self.curves["acc"].append(token_accuracy(dream_tokens, real_tokens))
            self.curves["psnr"].append(float(frame_psnr(self.frame, r.frame)))
            self.heat = diff_map(self.frame, r.frame)
        if r.done:
            if self.mode == "dream":  # the shadow game ended: start it again; the dream plays on
                self.real_frames.clear()
                self.real_actions.clear()
                self.real_frames.append(self.real.reset())
                while len(self.real_frames) < HISTORY:
                    self.real_frames.append(self.real.step(NOOP).frame)
                    self.real_actions.append(NOOP)
            else:
                self.say(f"game over (score {self.episode_return:.0f}), new game")
                self.restart()

    def idle(self) -> float:
        """Work that can run while waiting for the next key (the dream's action-independent pass)."""
        if self.dream is not None and (self.mode in ("dream", "compare") or self.branching) and not self.paused:
            return self.dream.prepare()
        return 0.0

    # ------------------------------------------------------------------ what to draw
    def actual_fps(self) -> float:
        t = self.step_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def view(self, stepped: bool = False) -> View:
        """The current frame(s), HUD lines and overlays."""
        hud: dict[str, str] = {"mode": self.mode + (" (branch)" if self.branching else "")}
        heat, curves, scrub = None, {}, None
        if self.mode == "replay":
            e = self._episode()
            n = len(e.images)
            if self.branching:
                real_i = min(self.branch_at + self.branch_t, n - 1)
                panels = [("dream (you)", self.frame), ("recorded", self.replay_frame(real_i))]
                scrub = (real_i, n)
            else:
                panels = [(f"episode {self.ep + 1}/{e_count(self.episodes)}", self.replay_frame(self.cursor))]
                scrub = (self.cursor, n)
                a = self.cursor
                hud["frame"] = f"{a}/{n - 1}"
                hud["action"] = ACTION_NAMES[int(e.actions[a])] if a < len(e.actions) else "-"
                hud["source"] = e.sources[0]
        elif self.mode == "compare":
            assert self.real_frame is not None
            panels = [("real", self.real_frame), ("dream", self.frame)]
            heat = self.heat
            curves = {k: list(v) for k, v in self.curves.items()}
        else:
            panels = [(self.mode, self.frame)]
        if self.mode != "replay" or self.branching:
            hud["action"] = ACTION_NAMES[self.action] + (f" [auto: {self.autopilot}]" if self.policy else "")
            hud["model ms" if self.dream is not None and self.mode != "real" else "step ms"] = f"{self.model_ms:.1f}"
            fps = self.actual_fps()
            hud["fps"] = f"{fps:.1f}"
            if self.mode in ("dream", "compare") or self.branching:
                hud["changed tokens"] = f"{self.changed}/336"
            if self.curves["acc"]:
                hud["token acc"] = f"{self.curves['acc'][-1]:.3f}"
                hud["psnr"] = f"{self.curves['psnr'][-1]:.1f} dB"
            if self.model_ms > 1000.0 / max(self.fps, 1e-6):
                hud["slow"] = f"model {self.model_ms:.0f} ms > {1000 / self.fps:.0f} ms budget: game slowed"
            elif len(self.step_times) == self.step_times.maxlen and 0 < fps < 0.9 * self.fps:
                # the model fits the budget, but the rest of the frame (emulator, drawing, a busy machine) does not
                hud["slow"] = f"{fps:.1f} FPS < {self.fps:g}: the machine is busy, game slowed"
        if self.recorder is not None:
            hud["episodes"] = f"{self.recorder.episodes} saved, this one {self.recorder.episode_frames} frames"
        if self.paused:
            hud["paused"] = "P to resume"
        msg = self.message if time.perf_counter() < self._message_until else ""
        if self.recorder is not None and self.recorder.message:
            msg = self.recorder.message
        return View(panels, hud, heat, curves, scrub, rec=self.recorder is not None, message=msg,
                    stepped=stepped, model_ms=self.model_ms)

    # ------------------------------------------------------------------ end
    def close(self) -> bool:
        """Save what is being recorded (the episode under way too). Returns False if it could not be."""
        if self.recorder is None:
            return True
        ok = self.recorder.close()
        if not ok:
            self.say(self.recorder.message, 30)
        return ok

    def command(self, name: str, *args: Any) -> None:
        """Run a command by name (what the app queues for the stepping thread)."""
        allowed = {"restart", "reanchor", "toggle_pause", "toggle_autopilot", "set_autopilot", "seek",
                   "next_episode", "toggle_play", "branch", "unbranch", "say"}
        if name not in allowed:
            raise ValueError(f"unknown session command {name!r}")
        getattr(self, name)(*args)


def e_count(episodes: Episodes | None) -> int:
    return 0 if episodes is None else episodes.n_episodes


def open_session(mode: str, checkpoint: str | Path | None, *, device: str = "auto",
                 decode: DecodeConfig = DecodeConfig(),
                 seed: int = 0, out: str | Path | None = None, replay_file: str | Path | None = None,
                 autopilot: str = "off", fps: float = 15.0, compile: bool = False) -> Session:
    """Build a Session, loading what the mode needs (raises CheckpointError / DatasetError, one line)."""
    episodes = Episodes.load(replay_file, mmap=True) if mode == "replay" and replay_file is not None else None
    dream = None
    if mode in ("dream", "compare") or (mode == "replay" and checkpoint is not None):
        assert checkpoint is not None
        dream = DreamEnv.from_checkpoint(checkpoint, device=device, decode=decode, seed=seed, compile=compile)
    return Session(mode, dream, seed=seed, record_to=out, episodes=episodes, autopilot=autopilot, fps=fps,
                   write_behind=fps > 0)  # paced play: a game over must not freeze the game while the file is rewritten
