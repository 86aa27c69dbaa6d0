"""The game's logic, headless: keys, dream env, re-anchor, compare metrics, replay, autopilot. No pygame here
(that is tests/test_app.py); the recorder, the stepping thread and the train jobs have their own files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from neuroplay.data.episodes import Episodes
from neuroplay.envs.real import RealEnv
from neuroplay.psnr import PSNR_CAP as PSNR_MAX
from neuroplay.psnr import frame_psnr
from neuroplay.session import (
    FIRE,
    LEFT,
    NOOP,
    RIGHT,
    Keys,
    Session,
    diff_map,
    keys_to_action,
    open_session,
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
    assert frame_psnr(a, a) == PSNR_MAX
    assert frame_psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (255**2 / (84 * 64 * 3))))
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
    assert v.curves["psnr"][-1] == pytest.approx(float(frame_psnr(dream_frame, real_frame)))
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

    from neuroplay.errors import SetupError

    def no_rom(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        raise SetupError("the Breakout ROM is missing from ale-py (test)")

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
