"""The endless-dream probe on real ALE play: the real game passes it, and each kind of broken dream fails it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuroplay.envs.breakout import (
    BRICK_COL_X,
    BRICK_ROW_Y,
    PADDLE_ROWS,
    bricks,
    detect,
)
from neuroplay.envs.digit_templates import DIGIT_CELLS, DIGIT_ROWS
from neuroplay.envs.dream import DreamEnv
from neuroplay.envs.flow import GAME_OVER_GONE
from neuroplay.envs.players import TrackerPolicy
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
    assert min(f["score_readable"], f["lives_readable"]) >= 0.97  # ALE blends a changing digit for a frame


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

    garbled = frames.copy()  # the lives digit stops halfway through a countdown: its left half is wiped
    garbled[200:, DIGIT_ROWS, DIGIT_CELLS[3] : DIGIT_CELLS[3] + 2] = 0
    f = figures(garbled, games)
    assert f["lives_readable"] < 0.6 and f["score_readable"] >= 0.97

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


def _game_to_the_end(seed: int) -> np.ndarray:
    """The frames of one real game that a clumsy tracker plays until ALE says it is over."""
    env, pol = RealEnv(seed=seed), TrackerPolicy(noise=0.4, seed=seed)
    frames = [env.reset()]
    while True:
        s = env.step(pol.act(frames[-1]))
        frames.append(s.frame)
        if s.done:
            assert s.info["game_over"] and env.lives == 0
            return np.stack(frames)


class _ReplayEngine:
    """A stand-in for `DreamEngine` that 'dreams' a recorded real game, whatever the actions: what `DreamEnv`
    makes of the frames is under test here, not a model."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.i, self.device, self.token_dtype = frames, 0, "cpu", np.uint8
        self.last_tokens = torch.zeros(336, dtype=torch.uint8)

    def reset(self, frames: np.ndarray, actions=None, seed: int = 0) -> np.ndarray:
        return frames[-1]

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        return np.zeros((len(tokens), 84, 64, 3), np.uint8)

    def step(self, action: int, revise: object = None) -> SimpleNamespace:
        frame = self.frames[min(self.i, len(self.frames) - 1)]
        self.i += 1
        return SimpleNamespace(frame=frame, tokens=np.zeros(336, np.uint8), timings_ms={"total": 0.0},
                               changed_tokens=0)


def test_a_dream_game_ends_when_its_last_ball_is_lost() -> None:
    """`DreamEnv` ends its game as the real one ends (`done`, info "game_over"), so the autopilot starts a new
    game instead of waiting for a serve that never comes after the last ball."""
    frames = _game_to_the_end(0)
    env = DreamEnv(_ReplayEngine(frames[4:]))  # type: ignore[arg-type]
    env.reset(frames[:4])
    steps = [env.step(0) for _ in range(len(frames) - 4 + GAME_OVER_GONE)]
    over = [s.info["game_over"] for s in steps]
    end = len(frames) - 5  # the step that shows the real game's last frame
    assert not any(over[:end]) and any(over[end:])
    first = over.index(True)
    assert steps[first].done and not steps[first].info["truncated"]
