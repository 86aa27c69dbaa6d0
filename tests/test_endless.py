"""The endless-dream probe on real ALE play: the real game passes it, and each kind of broken dream fails it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuroplay.envs.breakout import BRICK_COL_X, BRICK_ROW_Y, PADDLE_ROWS, bricks, detect
from neuroplay.envs.real import RealEnv
from neuroplay.evaluation.endless import ENDLESS_GATES, autopilot, endless, figures, stable_runs


@pytest.fixture(scope="module")
def real_play() -> tuple[np.ndarray, np.ndarray]:
    return autopilot(RealEnv(seed=0), 400, seed=0)


def test_real_game_is_a_clean_game(real_play: tuple[np.ndarray, np.ndarray]) -> None:
    f = figures(*real_play)
    assert f["paddle_visible"] == 1.0
    assert f["two_balls"] == f["two_paddles"] == f["brick_rises"] == 0
    assert f["lives_rises"] == f["score_drops"] == 0
    assert f["ball_in_play"] > 0.6
    assert f["bricks_broken"] >= 3  # the tracker plays: bricks fall within 400 steps


def test_each_broken_dream_fails_its_figure(real_play: tuple[np.ndarray, np.ndarray]) -> None:
    frames, games = real_play
    faded = frames.copy()
    faded[200:, PADDLE_ROWS] = 0  # the paddle fades out half way
    assert figures(faded, games)["paddle_visible"] < ENDLESS_GATES["paddle_visible"][1]

    two = frames.copy()
    two[100:110, 60:62, 30:31] = (200, 72, 72)  # a second ball-sized red blob below the wall
    assert figures(two, games)["two_balls"] >= 5

    regrown = frames.copy()
    regrown[-20:, 22:38] = frames[0, 22:38]  # the whole wall comes back for the last 20 frames
    f = figures(regrown, games)
    assert f["brick_rises"] > 0 and 0 < f["brick_rise_slots"] <= f["brick_rises"]

    flicker = frames.copy()  # one broken slot's centre pixel dims and brightens again, 3 frames each way
    gone = np.nonzero(~bricks(frames[-1]) & bricks(frames[0]))
    r, c = gone[0][0], gone[1][0]
    lit = frames[0, BRICK_ROW_Y[r], BRICK_COL_X[c]]
    for t0 in range(len(frames) - 60, len(frames) - 5, 12):
        flicker[t0 : t0 + 6, BRICK_ROW_Y[r], BRICK_COL_X[c]] = lit
    f = figures(flicker, games)
    assert f["brick_rises"] >= 4 and f["brick_rise_slots"] == 1

    frozen = np.repeat(frames[:1], len(frames), 0)  # a dream that never moves
    f = figures(frozen)
    assert f["bricks_broken"] == 0 and f["ball_in_play"] == 0.0


def test_two_paddles_are_counted() -> None:
    frame = autopilot(RealEnv(seed=1), 5, seed=1)[0][-1]
    assert detect(frame).n_paddles == 1
    x = int(detect(frame).paddle_x or 30)
    other = 10 if x > 32 else 50
    frame[PADDLE_ROWS.start + 1 : PADDLE_ROWS.start + 3, other : other + 6] = (200, 72, 72)
    assert detect(frame).n_paddles == 2


def test_stable_runs_ignore_a_misread_digit() -> None:
    assert stable_runs([5, 5, 5, 8, 4, 4, 4, None, 4, 3, 3, 3]) == [5, 4, 3]
    assert stable_runs([2, 2]) == []


def test_endless_runs_in_the_dream_beside_the_real_game(tiny_run: Path) -> None:
    from neuroplay.envs.dream import DreamEnv

    out = endless(DreamEnv.from_checkpoint(tiny_run, device="cpu"), steps=20, seed=0, real=RealEnv(seed=0))
    assert out["endless_frames"] == out["endless_real_frames"] == 21
    assert out["endless_real_paddle_visible"] == 1.0
    assert set(out["endless_gates"]) == set(ENDLESS_GATES)
