"""The game's logic, headless: keys, dream env, re-anchor, compare metrics, recording, replay, autopilot,
the stepping thread and the train-job plumbing. No pygame here (that is tests/test_app.py)."""

from __future__ import annotations

import math
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.real import RealEnv
from neuroplay.session import (
    FIRE,
    LEFT,
    NOOP,
    PSNR_MAX,
    RIGHT,
    Keys,
    Session,
    diff_map,
    keys_to_action,
    open_session,
    psnr,
    token_accuracy,
)


@pytest.fixture(scope="module")
def dream_env(tiny_run: Path):
    from neuroplay.envs.dream import DreamEnv

    return DreamEnv.from_checkpoint(tiny_run, device="cpu")


def test_keys_to_action() -> None:
    assert keys_to_action(Keys()) == NOOP
    assert keys_to_action(Keys(left=True)) == LEFT
    assert keys_to_action(Keys(right=True)) == RIGHT
    assert keys_to_action(Keys(left=True, right=True)) == NOOP
    assert keys_to_action(Keys(fire=True)) == FIRE
    assert keys_to_action(Keys(left=True, fire=True)) == FIRE


def test_metrics_match_hand_computation() -> None:
    a = np.zeros((84, 64, 3), np.uint8)
    b = a.copy()
    b[10, 20] = (255, 0, 0)
    assert psnr(a, a) == PSNR_MAX
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (255**2 / (84 * 64 * 3))))
    heat = diff_map(a, b)
    assert heat.shape == (84, 64) and heat[10, 20] == pytest.approx(1 / 3) and heat.sum() == pytest.approx(1 / 3)
    t1 = np.arange(336) % 32
    t2 = t1.copy()
    t2[:42] = (t2[:42] + 1) % 32
    assert token_accuracy(t1, t2) == pytest.approx(1 - 42 / 336)


def test_dream_env_interface(dream_env) -> None:
    frame = dream_env.reset(seed=0)
    assert frame.shape == (84, 64, 3) and frame.dtype == np.uint8
    s = dream_env.step(RIGHT)
    assert s.frame.shape == (84, 64, 3) and s.frame.dtype == np.uint8 and s.reward == 0.0 and not s.done
    assert s.info["tokens"].shape == (336,) and 0 <= s.info["changed_tokens"] <= 336
    assert {"model", "decode", "total"} <= set(s.info["timings_ms"])
    toks = dream_env.encode(np.stack([frame, s.frame]))
    assert toks.shape == (2, 336) and toks.dtype == np.uint8
    again = dream_env.reset(tokens=toks)  # from tokens: the frame is the decode of the last ones
    assert np.array_equal(again, dream_env.decode(toks[-1:])[0])
    with pytest.raises(ValueError):
        dream_env.step(4)


def test_dream_session_steps_and_reanchors(dream_env) -> None:
    s = Session("dream", dream_env, seed=0)
    assert len(s.real_frames) == 4
    for a in (Keys(fire=True), Keys(left=True), Keys(right=True)):
        v = s.step(a)
    assert v.stepped and v.panels[0][1].shape == (84, 64, 3)
    assert s.action == RIGHT and v.hud["action"] == "RIGHT" and "changed tokens" in v.hud and "model ms" in v.hud
    assert s.real.t == 3 + 3  # the shadow emulator: 3 warm-up NOOPs + the 3 steps
    s.reanchor()
    # Encoded as the re-anchor encodes them, the 4 frames in one batch: a conv's float sums can differ in the
    # last bit between batch sizes, and a near-tie between two codes then flips.
    real_tokens = dream_env.encode(np.stack(list(s.real_frames)))[-1]
    assert np.array_equal(dream_env.tokens, real_tokens)
    assert "re-anchored" in s.view().message
    s.toggle_pause()
    frozen = s.frame
    v = s.step(Keys(left=True))
    assert not v.stepped and s.frame is frozen and "paused" in v.hud


def test_compare_metrics(dream_env) -> None:
    s = Session("compare", dream_env, seed=1)
    for _ in range(3):
        v = s.step(Keys(fire=True))
    assert [t for t, _ in v.panels] == ["real", "dream"]
    dream_frame, real_frame = v.panels[1][1], v.panels[0][1]
    assert v.curves["psnr"][-1] == pytest.approx(psnr(dream_frame, real_frame))
    want = token_accuracy(dream_env.tokens, dream_env.encode(real_frame[None])[0])
    assert v.curves["acc"][-1] == pytest.approx(want) and len(v.curves["acc"]) == 3
    assert np.allclose(v.heat, diff_map(dream_frame, real_frame))


def test_bundled_start_frames_are_the_emulators() -> None:
    from neuroplay.config import START_FRAMES

    env = RealEnv(0)
    want = np.stack([env.reset(seed=0)] + [env.step(NOOP).frame for _ in range(3)])
    assert np.array_equal(Episodes.load(START_FRAMES).episode(0).frames, want)


def test_dream_without_an_emulator_starts_from_the_bundled_frames(dream_env, monkeypatch: pytest.MonkeyPatch) -> None:
    import neuroplay.session as session

    with_emulator = Session("dream", dream_env).frame

    def no_rom(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the Breakout ROM is missing from ale-py (test)")

    monkeypatch.setattr(session, "RealEnv", no_rom)
    s = Session("dream", dream_env)
    assert s.real is None and "ROM is missing" in s.view().message
    assert np.array_equal(s.frame, with_emulator)  # the same first history as from a fresh reset
    assert s.step(Keys(left=True)).stepped and s.steps == 1
    s.reanchor()
    assert np.array_equal(s.frame, with_emulator)
    with pytest.raises(RuntimeError, match="ROM"):  # modes that show the real game still need it
        Session("compare", dream_env)


def test_autopilot_plays_and_toggles(dream_env) -> None:
    s = Session("real", None, seed=0, autopilot="tracker")
    actions = {s.step(Keys(left=True)) and s.action for _ in range(60)}
    assert len(actions) > 1  # it fires and moves on its own: the held LEFT key is ignored
    s.toggle_autopilot()
    assert s.autopilot == "off"
    s.step(Keys(left=True))
    assert s.action == LEFT
    d = Session("dream", dream_env, autopilot="random")  # reads pixels, so it plays the dream too
    assert len({d.step() and d.action for _ in range(20)}) > 1


def test_hud_says_when_the_game_runs_slow() -> None:
    """The warning covers a slow frame whatever the cause (not only a slow model), and not a pause."""
    s = Session("real", None, seed=0, fps=15.0)
    s.step(Keys())
    assert "slow" not in s.view().hud
    s.step_times.extend(np.arange(31) * 0.1)  # 10 FPS sustained while the model (none here) is quick
    assert "10.0 FPS" in s.view().hud["slow"]
    s.step_times.clear()
    s.step_times.extend(np.arange(31) / 15.0)
    assert "slow" not in s.view().hud
    s.toggle_pause()
    assert not s.step_times  # the pause is not counted against the next frames


def _record(tmp_path: Path, n_steps: int, max_steps: int = 30) -> Session:
    s = Session("record", None, seed=3, record_to=tmp_path / "rec.npz", max_steps=max_steps)
    rng = np.random.default_rng(0)
    for _ in range(n_steps):
        s.step(Keys(*(rng.random(3) < (0.3, 0.3, 0.1))))
    return s


def test_record_appends_episodes_and_replays_bit_exactly(tmp_path: Path) -> None:
    s = _record(tmp_path, 75)
    eps = Episodes.load(tmp_path / "rec.npz")
    assert eps.n_episodes == 2 and list(eps.episode_lengths) == [30, 30]  # written as each episode ended
    v = s.view()
    assert v.rec and v.hud["episodes"].startswith("2 saved, this one 15")
    assert s.close()  # the episode under way is kept too
    eps = Episodes.load(tmp_path / "rec.npz")
    assert eps.sources == ["human"] * 3 and list(eps.episode_lengths) == [30, 30, 15]
    assert list(eps.dones[eps.transition_offsets + eps.episode_lengths - 1]) == [True, True, False]
    assert eps.meta["episode_seeds"] == [3, 4, 5]
    for e in range(3):
        ep = eps.episode(e)
        seed = eps.meta["episode_seeds"][e]
        env = RealEnv(seed=seed, max_steps=30)
        frames = [env.reset(seed=seed)] + [env.step(int(a)).frame for a in ep.actions]
        assert np.array_equal(np.stack(frames), ep.frames), f"episode {e} does not replay bit for bit"


def test_record_close_before_any_step_writes_nothing(tmp_path: Path) -> None:
    s = Session("record", None, record_to=tmp_path / "rec.npz")
    assert s.close() and not (tmp_path / "rec.npz").exists()


def test_record_restart_mid_episode_keeps_it(tmp_path: Path) -> None:
    s = _record(tmp_path, 10)
    s.restart()
    s.step(Keys(fire=True))
    assert s.close()
    eps = Episodes.load(tmp_path / "rec.npz")
    assert list(eps.episode_lengths) == [10, 1] and eps.meta["episode_seeds"] == [3, 4]


def test_record_write_behind_does_not_stall_the_game(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the paced game a finished episode is written by a writer thread: play goes on meanwhile, the
    HUD counts it, and close() waits for every write."""
    import threading

    gate, real_save = threading.Event(), Episodes.save

    def slow_save(self, p):  # noqa: ANN001, ANN202 - a big file on a slow disk
        gate.wait(30)
        return real_save(self, p)

    monkeypatch.setattr(Episodes, "save", slow_save)
    path = tmp_path / "rec.npz"
    s = Session("record", None, seed=3, record_to=path, max_steps=30, write_behind=True)
    for _ in range(35):  # the first episode ends at step 30; its write waits at the gate
        s.step(Keys(right=True))
    assert s.steps == 35 and not path.exists() and s.recorder.episodes == 1
    gate.set()
    s.recorder.wait()
    assert Episodes.load(path).n_episodes == 1
    s.step(Keys())
    assert "episode 1 saved" in s.view().message
    for _ in range(30):
        s.step(Keys(left=True))
    assert s.close()
    eps = Episodes.load(path)
    assert list(eps.episode_lengths) == [30, 30, 6] and len(eps.meta["episode_seeds"]) == 3


def test_record_disk_full_keeps_earlier_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _record(tmp_path, 35)
    path = tmp_path / "rec.npz"
    before = path.read_bytes()
    real_save = Episodes.save

    def full(self, p):  # noqa: ANN001
        raise DatasetError(f"{p}: disk full while saving; the previous file (if any) is intact")

    monkeypatch.setattr(Episodes, "save", full)
    for _ in range(30):  # the second episode ends: its write fails
        s.step(Keys(right=True))
    v = s.view()
    assert "disk full" in v.message and v.message.startswith("NOT SAVED")
    assert path.read_bytes() == before and Episodes.load(path).n_episodes == 1
    assert s.recorder.unsaved  # still in memory
    monkeypatch.setattr(Episodes, "save", real_save)  # space freed: the next write catches up
    assert s.close()
    assert list(Episodes.load(path).episode_lengths) == [30, 30, 5]


def test_recorder_refuses_a_bad_folder_and_rescues_when_it_goes_away(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuroplay.recorder import Recorder

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="cannot create its folder"):  # before anything is played
        Recorder(tmp_path / "a_file" / "r.npz")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "recs"
    rec = Recorder(folder / "r.npz")
    frame = np.zeros((84, 64, 3), np.uint8)
    rec.start(frame)
    for _ in range(3):
        rec.add(2, frame, 0.0, False)
    folder.rmdir()
    folder.write_text("the folder became a file: nothing can be written there")
    assert not rec.close()
    rescued = list(tmp_path.glob("r.rescue-*.npz"))
    assert len(rescued) == 1 and Episodes.load(rescued[0]).n_transitions == 3
    assert str(rescued[0].name) in rec.message and not rec.unsaved


def test_replay_and_branch(breakout_file: Path, dream_env) -> None:
    eps = Episodes.load(breakout_file, mmap=True)
    s = Session("replay", dream_env, episodes=eps)
    s.seek(12)
    v = s.step()
    assert not v.stepped and v.scrub == (12, eps.episode_lengths[0] + 1)
    assert np.array_equal(v.panels[0][1], eps.episode(0).frames[12])
    s.seek(to=1.0)
    assert s.cursor == eps.episode_lengths[0]
    s.toggle_play()
    s.step()
    assert not s.playing  # stops at the end
    s.next_episode(1)
    assert s.ep == 1 and s.cursor == 0
    s.seek(10)
    s.branch()
    assert s.branching
    v = s.step(Keys(left=True))
    assert v.stepped and [t for t, _ in v.panels] == ["dream (you)", "recorded"]
    assert np.array_equal(v.panels[1][1], eps.episode(1).frames[11]) and s.action == LEFT
    s.unbranch()
    assert not s.branching and s.cursor == 10


def test_replay_token_file_and_errors(tiny_run: Path, dream_env) -> None:
    toks = Episodes.load(tiny_run / "atari_tokens_hires.npz")
    s = Session("replay", dream_env, episodes=toks)
    assert s.step().panels[0][1].shape == (84, 64, 3)
    s.branch(5)
    assert s.step(Keys(fire=True)).stepped
    with pytest.raises(ValueError, match="tokens"):
        Session("replay", None, episodes=toks)
    with pytest.raises(ValueError, match="checkpoint"):
        Session("dream", None)
    with pytest.raises(ValueError, match="mode"):
        Session("nope", None)


def test_open_session_bad_checkpoint(tmp_path: Path) -> None:
    from neuroplay.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        open_session("dream", tmp_path)


def test_stepper_threads_and_stats(dream_env) -> None:
    from neuroplay.app.runner import FrameStats, Stepper

    s = Session("dream", dream_env)
    st = Stepper(s, threaded=True)
    stats = FrameStats(15)
    try:
        for i in range(4):
            assert st.submit(Keys(right=True), [("toggle_pause",)] if i == 3 else None)
            st.wait()
            view, new = st.poll()
            stats.tick(new and view.stepped, False, view.model_ms)
        assert s.paused and not view.stepped and stats.frames == 3
    finally:
        st.close()
    out = stats.summary()
    assert out["frames"] == 3 and out["model_step_ms"]["p50"] > 0 and out["dropped_frames"] == 0


def test_stepper_pending_refuses_a_second_key_until_the_frame_is_ready() -> None:
    import threading
    from types import SimpleNamespace

    from neuroplay.app.runner import Stepper

    gate = threading.Event()

    class Slow:  # the session surface the Stepper uses; its step blocks until the test opens the gate
        steps = idles = 0

        def view(self, stepped: bool = False) -> SimpleNamespace:
            return SimpleNamespace(stepped=stepped, n=self.steps)

        def step(self, keys: Keys | None) -> SimpleNamespace:
            gate.wait(5)
            self.steps += 1
            return self.view(True)

        def idle(self) -> float:
            self.idles += 1
            return 0.0

    s = Slow()
    st = Stepper(s, threaded=True)  # type: ignore[arg-type]
    try:
        assert s.idles == 1 and not st.pending  # the first frame pass runs before the clock starts
        assert st.submit(Keys(left=True)) and st.pending
        assert not st.wait_frame(0.02) and not st.submit(Keys(right=True))  # one frame at a time
        gate.set()
        assert st.wait_frame(5) and not st.pending
        st.wait()
        assert s.steps == 1 and s.idles == 2 and st.poll()[0].n == 1 and st.submit(Keys())
    finally:
        gate.set()
        st.close()


def test_trainjob_parsing_and_commands(tmp_path: Path) -> None:
    from neuroplay.trainjob import Progress, TrainSpec, command, parse_line

    p = Progress()
    assert parse_line("wm:  12%|#2        | 24/200 [00:03<00:25,  7.01it/s, loss=0.5123, acc=0.8300]", p)
    assert (p.stage, p.step, p.total, p.eta, p.rate) == ("wm", 24, 200, "00:25", "7.01it/s")
    assert p.metrics == {"loss": 0.5123, "acc": 0.83} and p.fraction == pytest.approx(0.12)
    assert parse_line("collect:  40%|####  | 8.0k/20.0k [00:02<00:03, 3.9kframe/s]", p) and p.total == 20000
    assert not parse_line("wm step 200: val_loss 0.4000, val_acc 0.9100", p)
    assert p.stage == "wm" and p.metrics["val_loss"] == 0.4 and p.metrics["val_acc"] == 0.91
    argv = command(TrainSpec("all", "tiny", data="d.npz", run_dir="runs/x", steps=50))
    assert argv[:4] == [sys.executable, "-u", "-m", "training.cli"] and "--vq-steps" in argv and "tiny" in argv
    assert "runs/x/atari_tokens_hires.npz" in command(TrainSpec("wm", run_dir="runs/x"))
    assert command(TrainSpec("collect", frames=500, data="o.npz"))[3:6] == ["neuroplay.cli", "collect", "--frames"]
    with pytest.raises(ValueError):
        command(TrainSpec("vqvae"))
    # jobs that would fail at once or destroy data are refused in one line, before starting
    from neuroplay.trainjob import TrainJob

    (tmp_path / "rec.npz").write_bytes(b"a person's recordings")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    for spec, match in [(TrainSpec("collect", data="rec.npz"), "already exists"),
                        (TrainSpec("wm", run_dir="runs/r"), "tokenize"),
                        (TrainSpec("tokenize", data="rec.npz", run_dir="runs/r"), "vqvae")]:
        with pytest.raises(ValueError, match=match):
            TrainJob.from_spec(spec, cwd=tmp_path)
    assert (tmp_path / "rec.npz").read_bytes() == b"a person's recordings"


def test_trainjob_follows_and_cancels_a_process(tmp_path: Path) -> None:
    from neuroplay.trainjob import TrainJob

    script = tmp_path / "fake_trainer.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        try:
            for i in range(1, 100000):
                sys.stderr.write(f"\\rwm:   1%|  | {i}/1000 [00:01<00:59, 9.0it/s, loss={1/i:.4f}]")
                sys.stderr.flush()
                if i % 5 == 0:
                    print(f"wm step {i}: val_loss {1/i:.4f}", flush=True)
                time.sleep(0.02)
        except KeyboardInterrupt:
            print("wm: interrupted at step 5; saved runs/x/last/wm", flush=True)
            sys.exit(130)
    """))
    job = TrainJob([sys.executable, str(script)], run_dir=tmp_path / "run").start()
    t0 = time.time()
    while job.progress.step < 6 and time.time() - t0 < 30:
        time.sleep(0.05)
    assert job.state == "running" and job.progress.total == 1000 and "val_loss" in job.progress.metrics
    assert job.cancel(timeout=20) == 130 and job.state == "cancelled"
    job.wait()
    assert any("interrupted" in line for line in job.lines()) and job.bar.startswith("wm:")
    assert job.checkpoint() is None
    for sub in ("vqvae", "wm"):
        (tmp_path / "run" / sub).mkdir(parents=True)
        (tmp_path / "run" / sub / "config.json").write_text("{}")
        (tmp_path / "run" / sub / "model.safetensors").write_bytes(b"")
    assert job.checkpoint() == tmp_path / "run"
    old = job.started_at - 60  # a world model from before this job is not offered as its result
    os.utime(tmp_path / "run" / "wm" / "model.safetensors", (old, old))
    assert job.checkpoint() is None
