"""The pygame app, headless (SDL dummy driver, set by conftest): every subcommand for a few frames, the
menu driven by key events, clear errors, and the train launcher with the `tiny` preset, cancelled."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from neuroplay.cli import build_parser, main
from neuroplay.data.episodes import Episodes

COMMON = ["--headless", "--fps", "0", "--device", "cpu"]


@pytest.mark.parametrize("cmd", ["play", "record", "compare", "replay"])
def test_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser(cmd).parse_args([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--headless" in out and "--frames" in out and "--checkpoint" in out


def test_play_dream_headless_with_stats_video_and_keys(tiny_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["play", "--checkpoint", str(tiny_run), *COMMON, "--frames", "12", "--stats", "s.json",
               "--video", "v.gif", "--video-format", "mp4",
               "--keys", "0:space,1:v,2-6:left,5:v,7-9:right,8:f1,9:s,10:p,11:y"])
    assert rc == 0
    stats = json.loads(Path("s.json").read_text())
    assert stats["ticks"] == 12 and stats["frames"] >= 9 and stats["model_step_ms"]["p50"] > 0
    assert {"sustained_fps", "frame_time_ms", "dropped_frames"} <= set(stats)
    assert set(stats["frame_time_ms"]) == {"mean", "p50", "p95", "p99"}
    import imageio.v2 as iio

    assert len(iio.mimread("v.gif")) == 12
    assert len(list(Path("screenshots").glob("*.png"))) == 1
    import cv2

    (clip,) = Path("screenshots").glob("*.mp4")  # V pressed twice: one MP4 of the ticks between
    cap = cv2.VideoCapture(str(clip))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


@pytest.mark.parametrize("argv", [
    ["play", "--mode", "real", "--autopilot", "tracker"],
    ["compare", "--autopilot", "random"],
    ["play", "--mode", "menu", "--keys", "0:down,1:return,2:escape"],
])
def test_modes_run_headless(argv: list[str], tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--checkpoint", str(tiny_run), *COMMON, "--frames", "6", "--fps", "30"]) == 0


def test_record_then_replay_and_branch(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--out", "rec.npz", *COMMON, "--frames", "15", "--keys", "1:space,3-8:left"]) == 0
    eps = Episodes.load("rec.npz")  # closed mid-episode by --frames: the episode is kept
    assert eps.sources == ["human"] and eps.n_transitions == 15 and set(eps.actions[3:9]) == {3}
    rc = main(["replay", "rec.npz", "--checkpoint", str(tiny_run), *COMMON, "--frames", "12",
               "--keys", "0-3:right,4:b,5-8:left,9:escape,10:escape"])
    assert rc == 0


def test_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["play", "--checkpoint", str(tmp_path / "nope"), *COMMON, "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuroplay: error:") and "nope" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad"
    (bad / "vqvae").mkdir(parents=True)
    (bad / "wm").mkdir()
    (bad / "vqvae" / "config.json").write_text("{not json")
    (bad / "wm" / "config.json").write_text("{}")
    assert main(["play", "--checkpoint", str(bad), *COMMON, "--frames", "2"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.npz"), *COMMON, "--frames", "2"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Only the project's own errors become one line: a torch shape error inside a command is a bug, and
    hiding it behind `neuroplay: error:` would look like bad input."""
    import torch

    import neuroplay.play_cli as play_cli

    def shape_bug(cfg):  # noqa: ANN001, ANN202
        return torch.zeros(2, 3) @ torch.zeros(2, 3)

    monkeypatch.setattr(play_cli, "run_game", shape_bug)
    with pytest.raises(RuntimeError, match="shapes"):
        main(["play", *COMMON, "--frames", "2"])
    capsys.readouterr()
    assert main(["bench", "--preset", "tiny", "--steps", "0"]) == 2  # a bad flag stays one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuroplay: error: --steps") and len(err.splitlines()) == 1


def test_a_missing_dependency_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import neuroplay.play_cli as play_cli

    def broken(cfg):  # noqa: ANN001, ANN202 - as if pygame or ale-py were not installed
        raise ModuleNotFoundError("No module named 'pygame'", name="pygame")

    monkeypatch.setattr(play_cli, "run_game", broken)
    assert main(["play", *COMMON, "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pygame" in err and "install" in err


def test_default_checkpoint_missing_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from neuroplay.app import catalog

    monkeypatch.setattr(catalog, "DEFAULT_CHECKPOINT", tmp_path / "no-bundled-model")
    monkeypatch.chdir(tmp_path)
    assert main(["play", *COMMON, "--frames", "2"]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "neuroplay train" in err


def _app(tiny_run: Path, tmp_path: Path, **kw: object):
    from neuroplay.app.main import App
    from neuroplay.play_cli import PlayConfig

    cfg = PlayConfig(mode="menu", headless=True, fps=0, device="cpu", checkpoint=str(tiny_run),
                     out=str(tmp_path / "rec.npz"), shots_dir=str(tmp_path / "shots"), **kw)  # type: ignore[arg-type]
    return App(cfg)


def _press(app, *keys: int) -> None:  # noqa: ANN001
    import pygame

    for k in keys:
        app.handle(pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode="", scancode=0))
        app.tick()
        app.handle(pygame.event.Event(pygame.KEYUP, key=k, mod=0, unicode="", scancode=0))
        app.tick()


def test_a_tap_shorter_than_a_tick_still_acts(tiny_run: Path, tmp_path: Path) -> None:
    """A key pressed and released between two frames is not lost (a quick Space tap launches the ball)."""
    import pygame

    app = _app(tiny_run, tmp_path)
    try:
        app.open_mode("real", from_cli=True)
        app.tick()
        assert app.session.action == 0
        for t in (pygame.KEYDOWN, pygame.KEYUP):  # both before the next tick
            app.handle(pygame.event.Event(t, key=pygame.K_SPACE, mod=0, unicode="", scancode=0))
        app.tick()
        assert app.session.action == 1  # FIRE reached the game once ...
        app.tick()
        assert app.session.action == 0  # ... and only once
    finally:
        app.shutdown()


def test_window_fits_a_narrow_screen(tiny_run: Path, tmp_path: Path) -> None:
    from neuroplay.app import draw

    app = _app(tiny_run, tmp_path)
    try:
        app.scale, app.desk_w = 6, 1366  # a common laptop width
        assert app._size("compare")[0] <= 1366 - 40 < draw.window_size(6, 3, 120)[0]
        w, h = draw.window_size(6, 1, 0)
        assert app._size("dream") == (max(w, 720), max(h, 560))  # one panel fits at the chosen scale
        app.desk_w = 0  # unknown (headless): the chosen scale
        assert app._size("compare")[0] == draw.window_size(6, 3, 120)[0]
    finally:
        app.shutdown()


@pytest.mark.parametrize("leave", ["escape", "window close", "ctrl-c"])
def test_leaving_a_recording_keeps_the_episode_under_way(leave: str, tiny_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import pygame

    app = _app(tiny_run, tmp_path)
    app.open_mode("record", from_cli=True)
    app.handle(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT, mod=0, unicode="", scancode=0))
    for _ in range(5):
        app.tick()
    if leave == "escape":
        _press(app, pygame.K_ESCAPE)
        assert app.where == "menu"
        app.shutdown()
    elif leave == "window close":
        app.handle(pygame.event.Event(pygame.QUIT))
        assert app.run() == 0  # the loop ends at once and saves on the way out
    else:
        def interrupted() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(app, "tick", interrupted)
        with pytest.raises(KeyboardInterrupt):
            app.run()
    eps = Episodes.load(tmp_path / "rec.npz")
    assert eps.sources == ["human"] and eps.n_transitions == 5 and set(eps.actions) == {3}


def test_a_session_loads_off_the_ui_thread(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the menu the model loads in the background: the window keeps ticking, Esc abandons the load,
    and a failure comes back as the menu's notice."""
    import threading
    import time

    import pygame

    import neuroplay.app.main as m
    from neuroplay.play_cli import PlayConfig

    real_open, gate = m.open_session, threading.Event()

    def slow_open(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        gate.wait(30)
        return real_open(*args, **kw)

    monkeypatch.setattr(m, "open_session", slow_open)
    app = m.App(PlayConfig(mode="menu", headless=True, fps=60, device="cpu", checkpoint=str(tiny_run),
                           out=str(tmp_path / "rec.npz"), shots_dir=str(tmp_path / "shots")))
    try:
        app.open_mode("dream")
        for _ in range(3):
            app.tick()
        assert app.where == "loading" and app.session is None
        gate.set()
        t0 = time.time()
        while app.where == "loading" and time.time() - t0 < 60:
            app.tick()
        assert app.where == "play" and app.session.mode == "dream"
        _press(app, pygame.K_ESCAPE)
        gate.clear()
        app.open_mode("dream")
        _press(app, pygame.K_ESCAPE)  # abandon the load
        assert app.where == "menu" and app.loader is None and app.session is None
        gate.set()

        def broken(*args, **kw):  # noqa: ANN002, ANN003, ANN202
            raise ValueError("broken model")

        monkeypatch.setattr(m, "open_session", broken)
        app.open_mode("dream")
        while app.where == "loading":
            app.tick()
        assert app.where == "menu" and "broken model" in app.notice
    finally:
        app.shutdown()


def test_menu_navigation(tiny_run: Path, breakout_file: Path, tmp_path: Path) -> None:
    import pygame

    app = _app(tiny_run, tmp_path, file=str(breakout_file))
    try:
        app.tick()
        _press(app, pygame.K_RETURN)  # first item: the dream
        assert app.where == "play" and app.session.mode == "dream"
        _press(app, pygame.K_ESCAPE)
        assert app.where == "menu" and app.session is None
        _press(app, pygame.K_DOWN, pygame.K_DOWN, pygame.K_RETURN)  # compare
        assert app.session.mode == "compare"
        _press(app, pygame.K_ESCAPE, pygame.K_DOWN, pygame.K_DOWN, pygame.K_RETURN)  # replay
        assert app.session.mode == "replay"
        _press(app, pygame.K_b)
        assert app.session.branching
        _press(app, pygame.K_ESCAPE, pygame.K_ESCAPE)
        _press(app, pygame.K_DOWN, pygame.K_DOWN, pygame.K_RETURN)  # settings
        assert app.where == "settings"
        _press(app, pygame.K_DOWN, pygame.K_RIGHT)
        assert app.scale == 5
        _press(app, pygame.K_ESCAPE, pygame.K_UP, pygame.K_RETURN)  # train screen
        assert app.where == "train"
        _press(app, pygame.K_ESCAPE)
        assert app.where == "menu"
        x, y = app.menu.rects[1].center  # the mouse: click "Play the real game"
        app.handle(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(x, y), button=1))
        assert app.session.mode == "real"
        _press(app, pygame.K_ESCAPE, pygame.K_ESCAPE)
        assert app.quit
    finally:
        app.shutdown()


def test_train_launcher_tiny_preset_cancel(tiny_run: Path, breakout_file: Path, tmp_path: Path) -> None:
    import pygame

    from neuroplay.trainjob import TrainSpec

    app = _app(tiny_run, tmp_path)
    try:
        _press(app, *[pygame.K_DOWN] * 5, pygame.K_RETURN)
        assert app.where == "train"
        run = tmp_path / "run"
        app.train.spec = TrainSpec("vqvae", "tiny", data=str(breakout_file), steps=100_000, device="cpu",
                                   extra=["--log-every", "1", "--batch-size", "4", "--val-frames", "16"])
        app.train.run_choice = str(run)
        app.train.start()
        job = app.train.job
        t0 = time.time()
        while job.progress.step < 2 and job.state == "running" and time.time() - t0 < 180:
            app.tick()
            time.sleep(0.05)
        assert job.state == "running", job.lines()
        assert job.progress.total == 100_000 and job.progress.stage == "vqvae"
        _press(app, pygame.K_c)  # cancel: SIGINT, the trainer saves a resumable checkpoint
        while job.state == "running" and time.time() - t0 < 240:
            app.tick()
            time.sleep(0.05)
        job.wait(10)
        assert job.state == "cancelled" and job.returncode == 130
        assert any("interrupted" in line for line in job.lines(50))
        assert (run / "last" / "vqvae" / "model.safetensors").is_file()
    finally:
        app.shutdown()


def test_dream_paddle_follows_keys_with_lite_checkpoint(tmp_path: Path) -> None:
    """With the trained `lite` checkpoint, held LEFT then RIGHT keys (window events, as a player's) move
    the decoded paddle that way: left of where it started, then right of it."""
    import pygame

    from neuroplay.app.catalog import DEFAULT_CHECKPOINT, is_pair
    from neuroplay.app.main import App
    from neuroplay.envs.breakout import detect
    from neuroplay.play_cli import PlayConfig

    if not is_pair(DEFAULT_CHECKPOINT):
        pytest.skip("no bundled lite checkpoint")
    app = App(PlayConfig(mode="menu", headless=True, fps=0, device="cpu", shots_dir=str(tmp_path)))
    try:
        app.open_mode("dream", from_cli=True)
        xs = [detect(app.session.frame).paddle_x]
        for key, ticks in ((pygame.K_LEFT, 6), (pygame.K_RIGHT, 12)):
            app.handle(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
            for _ in range(ticks):
                app.tick()
            app.handle(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))
            xs.append(detect(app.session.frame).paddle_x)
        x0, x_left, x_right = xs
        assert None not in xs, xs
        assert x_left < x0 < x_right, xs
    finally:
        app.shutdown()


def test_no_display_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    rc = main(["play", "--mode", "real", "--frames", "2", "--fps", "0"])
    err = capsys.readouterr().err
    if rc == 0:
        pytest.skip("SDL found a real screen here")
    assert rc == 2 and "no display" in err and "--headless" in err and len(err.strip().splitlines()) == 1
