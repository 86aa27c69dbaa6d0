"""What is on a Breakout screen, read from an 84x64 frame: the paddle, the ball, the bricks, the score and lives.

Written once and used everywhere: the `tracker` data-collection policy and the game's autopilot (which
must also drive the *dream*, where there is no emulator RAM, so it reads pixels), and the evaluation's
ball-visibility and paddle-response checks. Calibrated on ALE frames after the project's preprocessing:
the ball and paddle are the same red (200, 72, 72), blended with black by the area resize; the walls are
grey; bricks fill rows 22..37; the scoreboard's grey digits sit in rows 2..5.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from neuroplay.envs.digit_templates import DIGIT_CELLS, DIGIT_ROWS, DIGIT_W, templates

PLAY_COLS = slice(2, 60)
"""Columns inside the side walls (the right wall's red foot at 60-61 is left out)."""
BALL_ROWS = (slice(12, 22), slice(38, 75))
"""Rows where a red blob can only be the ball (above and below the brick wall; the paddle starts at 75)."""
BRICK_ROWS = slice(22, 38)
PADDLE_ROWS = slice(75, 79)
MIN_RED = 18
"""Red minus green above which a pixel counts as ball/paddle red (the blend with black keeps the ratio)."""


@dataclass(frozen=True)
class Objects:
    """Positions in frame pixels (x = column, y = row); None when not visible."""

    paddle_x: float | None
    ball_x: float | None
    ball_y: float | None
    ball_pixels: int

    @property
    def ball_visible(self) -> bool:
        return self.ball_x is not None


def red_mask(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.int16)
    return (f[..., 0] - f[..., 1] > MIN_RED) & (f[..., 0] - f[..., 2] > MIN_RED)


def detect(frame: np.ndarray, max_ball_pixels: int = 12) -> Objects:
    """Paddle centre and ball centre of one (84, 64, 3) uint8 frame.

    A ball is a red blob of 1..`max_ball_pixels` pixels outside the brick rows; anything bigger is not
    a ball (a decoded frame full of red smear does not count as "ball visible").
    """
    red = red_mask(frame)
    pad = red[PADDLE_ROWS, PLAY_COLS]
    cols = np.nonzero(pad.any(axis=0))[0]
    paddle_x = float(cols.mean() + PLAY_COLS.start) if len(cols) else None
    ys, xs = [], []
    for rows in BALL_ROWS:
        y, x = np.nonzero(red[rows, PLAY_COLS])
        ys.append(y + rows.start)
        xs.append(x + PLAY_COLS.start)
    y, x = np.concatenate(ys), np.concatenate(xs)
    if 0 < len(y) <= max_ball_pixels:
        return Objects(paddle_x, float(x.mean()), float(y.mean()), len(y))
    return Objects(paddle_x, None, None, int(len(y)))


BRICK_ROW_Y = (24, 26, 28, 31, 33, 36)
"""Centre row of each of the 6 brick rows (ALE rows 57 + 6i .. 62 + 6i, times 84/210)."""
BRICK_COL_X = tuple(int(4.8 + 3.2 * k) for k in range(18))
"""Centre column of each of the 18 bricks of a row (ALE columns 8 + 8k .. 15 + 8k, times 64/160)."""
MIN_CHROMA = 20
"""Channel max minus min above which a pixel is coloured (bricks), not grey or black."""


def bricks(frame: np.ndarray) -> np.ndarray:
    """(6, 18) bool: which bricks stand, read at each brick's centre pixel."""
    f = frame[np.ix_(BRICK_ROW_Y, BRICK_COL_X)].astype(np.int16)  # (6, 18, 3)
    return (f.max(-1) - f.min(-1)) > MIN_CHROMA


def bricks_per_row(frame: np.ndarray) -> np.ndarray:
    """(6,) int: standing bricks in each row, top (red) to bottom (blue)."""
    return bricks(frame).sum(1)


@dataclass(frozen=True)
class Scoreboard:
    """The digits at the top of the screen; None where a cell reads as no digit (a garbled frame)."""

    score: int | None
    lives: int | None


MAX_DIGIT_DISTANCE = 300
"""Mean-free L1 distance (sum over the 4x5 cell, grey levels) above which a cell is no digit. The closest
two real digits (0 and 8) are 182 apart; a blank cell is over 900 from every digit."""


@cache
def _digit_bank() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per cell: (digits (D,), templates (D, 20) int16)."""
    t = templates()
    out = []
    for c in range(len(DIGIT_CELLS)):
        ds = sorted(d for (cc, d) in t if cc == c)
        out.append((np.array(ds), np.stack([t[(c, d)].reshape(-1) for d in ds]).astype(np.int16)))
    return out


def read_digit(frame: np.ndarray, cell: int) -> int | None:
    """The digit in scoreboard cell `cell` (0-2 score, 3 lives): nearest template, None if none is near."""
    x = DIGIT_CELLS[cell]
    patch = frame[DIGIT_ROWS, x : x + DIGIT_W].max(-1).reshape(-1).astype(np.int16)
    digits, bank = _digit_bank()[cell]
    dist = np.abs(bank - patch).sum(1)
    i = int(dist.argmin())
    return int(digits[i]) if dist[i] <= MAX_DIGIT_DISTANCE else None


def read_scoreboard(frame: np.ndarray) -> Scoreboard:
    """Score (3 digits) and lives as the screen shows them."""
    d = [read_digit(frame, c) for c in range(len(DIGIT_CELLS))]
    score = None if None in d[:3] else d[0] * 100 + d[1] * 10 + d[2]  # type: ignore[operator]
    return Scoreboard(score, d[3])


def brick_pixels(frame: np.ndarray) -> int:
    """Coloured (non-grey, non-black) pixels in the brick rows: falls as bricks break."""
    f = frame[BRICK_ROWS, PLAY_COLS].astype(np.int16)
    return int(((f.max(-1) - f.min(-1)) > 20).sum())


class TrackerPolicy:
    """A scripted player that moves the paddle under the ball, with noise so the data stays varied.

    `noise` is the chance of a uniformly random action each step; each episode also draws a small
    aiming offset, so the ball hits different parts of the paddle and bounces at different angles.
    With low noise it clears much of the wall and reaches the fast late-game ball that random play
    never sees. Reads pixels only, so it also plays inside the dream.
    """

    NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3

    def __init__(self, noise: float = 0.1, seed: int = 0, dead_zone: float = 1.5) -> None:
        self.noise, self.dead_zone = noise, dead_zone
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.offset = float(self.rng.uniform(-1.5, 1.5))
        self.prev: Objects | None = None

    def act(self, frame: np.ndarray) -> int:
        obj = detect(frame)
        prev, self.prev = self.prev, obj
        if self.rng.random() < self.noise:
            return int(self.rng.integers(4))
        if not obj.ball_visible:
            return self.FIRE if self.rng.random() < 0.5 else self.NOOP
        target = obj.ball_x
        if prev is not None and prev.ball_visible and obj.ball_y is not None and prev.ball_y is not None:
            vx, vy = obj.ball_x - prev.ball_x, obj.ball_y - prev.ball_y
            if vy > 0:  # falling: aim where it will cross the paddle row, folding at the walls
                steps = (76 - obj.ball_y) / max(vy, 0.5)
                target = _fold(obj.ball_x + vx * min(steps, 20), PLAY_COLS.start, PLAY_COLS.stop - 1)
        if obj.paddle_x is None:
            return self.NOOP
        d = target + self.offset - obj.paddle_x
        if abs(d) <= self.dead_zone:
            return self.NOOP
        return self.RIGHT if d > 0 else self.LEFT


def _fold(x: float, lo: float, hi: float) -> float:
    """Reflect x into [lo, hi] as a ball bouncing off the side walls would be."""
    span = hi - lo
    y = (x - lo) % (2 * span)
    return lo + (y if y <= span else 2 * span - y)


class RandomPolicy:
    """Uniform random actions, or (`hold_max` > 1) each action held for a random 1..hold_max steps."""

    def __init__(self, seed: int = 0, hold_max: int = 1) -> None:
        self.rng, self.hold_max = np.random.default_rng(seed), hold_max
        self.left, self.action = 0, 0

    def reset(self) -> None:
        self.left = 0

    def act(self, frame: np.ndarray | None = None) -> int:
        if self.left <= 0:
            self.action = int(self.rng.integers(4))
            self.left = int(self.rng.integers(1, self.hold_max + 1))
        self.left -= 1
        return self.action
