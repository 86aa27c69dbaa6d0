"""What is on a Breakout screen, read from an 84x64 frame: the paddle, the ball, the bricks, the score and lives.

Written once and used everywhere: the scripted players of `players.py` (data collection and the game's
autopilot, which must also drive the *dream*, where there is no emulator RAM, so they read pixels), and the
evaluation's ball-visibility and paddle-response checks. Calibrated on ALE frames after the project's preprocessing:
the ball and paddle are the same red (200, 72, 72), blended with black by the area resize; the walls are
grey; bricks fill rows 22..37; the scoreboard's grey digits sit in rows 2..5.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from neuroplay.envs.digit_templates import DIGIT_CELLS, DIGIT_ROWS, DIGIT_W, templates

PLAY_COLS = slice(2, 60)
"""Columns inside the side walls where the paddle is read (the right wall's red foot at 61-63 is left out)."""
BALL_COLS = slice(2, 61)
"""Columns where the ball is read: against the right wall the ball blends into column 60, which the wall's grey
leaves neutral above the paddle rows (held-out play: nothing but the ball is ever red there)."""
BALL_ROWS = (slice(12, 22), slice(38, 75))
"""Rows where a red blob can only be the ball (above and below the brick wall; the paddle starts at 75)."""
BRICK_ROWS = slice(22, 38)
GAP_COLS = slice(4, 60)
"""Columns of the brick wall where a ball is looked for in a gap: inside the walls, and not column 3, which the
first brick shares with the left wall. Where that brick broke, the shipped dream draws column 3 at chroma 40-53,
which read as a ball in 250 of 2,000 endless-dream frames."""
GAP_PEAK = 50
"""Chroma a ball in a gap of the wall must reach somewhere: the dream leaves dim stubs of broken bricks (40-50)
that a player does not take for a ball; it costs real gap balls 1 reading in 200 (`RealEnv.lone_ball` truth)."""
PADDLE_ROWS = slice(75, 79)
MIN_RED = 18
"""Red minus green above which a pixel counts as ball/paddle red (the blend with black keeps the ratio)."""


MIN_PEAK = 40
"""A red blob counts only if its strongest pixel's red excess (red minus the larger of green and blue) reaches
this. Every ball in real play does (held-out frames: minimum 41, 1st percentile 51), while the faint reddish
haze a decoder leaves on black (excess 19-30) is invisible to a player: counted, it made false balls and
pulled the ball's centre off by pixels."""
PADDLE_MIN_WIDTH = 4
"""A red blob in the paddle rows this many columns wide is a paddle: the real paddle spans 6-7 columns (4 half
hidden at a wall), the ball at most 3 with its blended edges."""


@dataclass(frozen=True)
class Objects:
    """Positions in frame pixels (x = column, y = row); None when not visible."""

    paddle_x: float | None
    ball_x: float | None
    ball_y: float | None
    ball_pixels: int
    n_balls: int = 0
    """Separate ball-sized blobs (`detect`'s ball candidates: red outside the wall and beside the paddle, coloured
    in the wall's gaps); a frame of the real game never shows two."""
    n_paddles: int = 0
    """Separate paddle-wide red blobs (`PADDLE_MIN_WIDTH`) in the paddle rows (the real game: 0 or 1)."""

    @property
    def ball_visible(self) -> bool:
        return self.ball_x is not None


def red_mask(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.int16)
    return (f[..., 0] - f[..., 1] > MIN_RED) & (f[..., 0] - f[..., 2] > MIN_RED)


_TOP = BALL_ROWS[0].start
"""First row any red object can be in; detection works on rows _TOP..PADDLE_ROWS.stop only."""
_BALL_REGION = np.zeros((PADDLE_ROWS.stop - _TOP, 64), bool)
for _rows in BALL_ROWS:
    _BALL_REGION[_rows.start - _TOP : _rows.stop - _TOP, BALL_COLS] = True
_PADDLE_REGION = np.zeros_like(_BALL_REGION)
_PADDLE_REGION[PADDLE_ROWS.start - _TOP :, PLAY_COLS] = True
_FREE_REGION = _BALL_REGION | _PADDLE_REGION
"""Where a ball is looked for once the paddle's own pixels are taken out: a ball beside the paddle, or passing
it on the way out, is a red blob of its own in the paddle rows."""


def _blobs(red: np.ndarray, region: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) of each 8-connected blob of `red` pixels inside `region` (crop coordinates; None: all)."""
    mask = red if region is None else red & region
    if not mask.any():
        return []
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    return [np.nonzero(labels == k) for k in range(1, n)]


def detect(frame: np.ndarray, max_ball_pixels: int = 12) -> Objects:
    """Paddle centre and ball centre of one (84, 64, 3) uint8 frame.

    Both are blobs of red pixels (over `MIN_RED`) that touch a clearly red one (over `MIN_PEAK`): what a player
    sees, without the faint haze a decoder can leave. The paddle is the largest blob in the paddle rows, its x
    the mean of its columns. A ball is a blob of 1..`max_ball_pixels` pixels anywhere but on the paddle and the
    standing bricks: above and below the wall, against either side wall, beside the paddle in its rows (there
    narrower than a paddle), and, in its row's colour, in a gap of the wall (`_gap_pixels`). Anything bigger is
    not a ball (a decoded frame full of red smear does not count as "ball visible"); with several, the
    brightest is the ball and `n_balls` says how many there were. Against the emulator's RAM this reads 99.5%
    of the balls that stand alone on the screen (`tests/test_objects.py`); a ball that touches the paddle or a
    brick is part of it, for the detector as for the eye.
    """
    paddle_x, n_pad, small, blobs, salience = _read(frame, max_ball_pixels)
    if not small:
        return Objects(paddle_x, None, None, int(sum(len(b[0]) for b in blobs)), 0, n_pad)
    y, x = max(small, key=lambda b: int(salience[b].max()))
    return Objects(paddle_x, float(x.mean()), float((y + _TOP).mean()), len(y), len(small), n_pad)


def ball_mask(frame: np.ndarray, max_ball_pixels: int = 12) -> np.ndarray:
    """(84, 64) bool: the pixels of every ball `detect` sees (tests erase them to make a ball-less frame)."""
    out = np.zeros(frame.shape[:2], bool)
    for y, x in _read(frame, max_ball_pixels)[2]:
        out[y + _TOP, x] = True
    return out


Blob = tuple[np.ndarray, np.ndarray]


def _read(frame: np.ndarray, max_ball_pixels: int) -> tuple[float | None, int, list[Blob], list[Blob], np.ndarray]:
    """`detect`'s work: (paddle x, number of paddle-wide blobs, ball blobs, all candidate blobs, salience), blobs
    in the crop's coordinates (rows from `_TOP`)."""
    f = frame[_TOP : PADDLE_ROWS.stop].astype(np.int16)  # (67, 64, 3): the rows objects can be in
    excess = f[..., 0] - np.maximum(f[..., 1], f[..., 2])
    core = (excess >= MIN_PEAK).view(np.uint8)
    # A pixel of an object: red, and next to a clearly red one (an object's faint blended edge stays, haze goes).
    red = (excess > MIN_RED) & cv2.dilate(core, np.ones((3, 3), np.uint8)).astype(bool)
    pads = _blobs(red, _PADDLE_REGION)
    paddle = max(pads, key=lambda b: len(b[0])) if pads else None
    paddle_x = float(np.unique(paddle[1]).mean()) if paddle is not None else None
    n_pad = sum(len(np.unique(b[1])) >= PADDLE_MIN_WIDTH for b in pads)
    free = red & _FREE_REGION
    if paddle is not None:
        free[paddle] = False
    gap, gap_chroma = _gap_pixels(frame)
    # How clearly each pixel is the ball: red excess outside the wall, chroma in the wall's gaps.
    salience = np.where(gap, gap_chroma, excess)
    blobs = _blobs(free | gap)
    # A ball blob needs a clear pixel of its own (a paddle's faint edge cut off by the row limit has none), and
    # in the paddle rows it must be narrower than a paddle (a second paddle is no ball).
    low = PADDLE_ROWS.start - _TOP
    small = [b for b in blobs if len(b[0]) <= max_ball_pixels and salience[b].max() >= MIN_PEAK
             and (b[0].max() < low or len(np.unique(b[1])) < PADDLE_MIN_WIDTH)]
    return paddle_x, n_pad, small, blobs, salience


def _gap_pixels(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the ball may be inside the brick wall, on the detector's crop (rows `_TOP`..), and the chroma of
    every pixel there. Inside the wall the ball takes its row's colour, so it is told apart as a player tells
    it: coloured pixels (chroma over `MIN_RED`, next to one over `GAP_PEAK`) clear of every brick's pixels
    (`standing_pixels`), brighter than any brick pixel they touch (a brick's blurred edge fades out of it)."""
    w = frame[BRICK_ROWS, GAP_COLS].astype(np.int16)  # (16, 57, 3)
    wall = np.zeros((BRICK_ROWS.stop - BRICK_ROWS.start, 64), np.int16)  # (16, 64): chroma in the wall's rows
    wall[:, GAP_COLS] = w.max(-1) - w.min(-1)
    standing = standing_pixels(frame)
    chroma = np.zeros((PADDLE_ROWS.stop - _TOP, 64), np.int16)  # (67, 64): the detector's crop
    if not (wall[~standing] >= GAP_PEAK).any():  # nothing clearly coloured off the bricks: most frames
        return chroma > 0, chroma
    rows = slice(BRICK_ROWS.start - _TOP, BRICK_ROWS.stop - _TOP)
    chroma[rows] = np.where(standing, 0, wall)
    brick = np.zeros(chroma.shape, np.float32)
    brick[rows] = np.where(standing, wall, 0)
    kernel = np.ones((3, 3), np.uint8)
    clear = chroma > cv2.dilate(brick, kernel)  # brighter than every brick pixel it touches
    near = cv2.dilate((clear & (chroma >= GAP_PEAK)).view(np.uint8), kernel).astype(bool)
    return (chroma > MIN_RED) & near, chroma


BRICK_ROW_Y = (24, 26, 28, 31, 33, 36)
"""Centre row of each of the 6 brick rows (ALE rows 57 + 6i .. 62 + 6i, times 84/210)."""
BRICK_COL_X = tuple(int(4.8 + 3.2 * k) for k in range(18))
"""Centre column of each of the 18 bricks of a row (ALE columns 8 + 8k .. 15 + 8k, times 64/160)."""
MIN_CHROMA = 45
"""Channel max minus min above which a brick's centre pixel is a brick: half the weakest brick colour's (green,
88). A decoder's dim smudge where a brick was broken (20-40) is not a brick to a player."""


def bricks(frame: np.ndarray) -> np.ndarray:
    """(6, 18) bool: which bricks stand, read at each brick's centre pixel."""
    f = frame[np.ix_(BRICK_ROW_Y, BRICK_COL_X)].astype(np.int16)  # (6, 18, 3)
    return (f.max(-1) - f.min(-1)) > MIN_CHROMA


def _span(lo: float, hi: float, n: int) -> np.ndarray:
    """(n,) bool: the pixels that the interval [lo, hi) of frame coordinates touches."""
    m = np.zeros(n, bool)
    m[int(np.floor(lo)) : int(np.ceil(hi))] = True
    return m


_SLOT_ROWS = np.stack([_span(22.8 + 2.4 * i, 25.2 + 2.4 * i, 84)[BRICK_ROWS] for i in range(6)]).astype(np.float32)
"""(6, 16): the rows of `BRICK_ROWS` each brick row touches (ALE rows 57 + 6i .. 62 + 6i, times 84/210), blended
edges included."""
_SLOT_COLS = np.stack([_span(3.2 + 3.2 * k, 6.4 + 3.2 * k, 64) for k in range(18)]).astype(np.float32)
"""(18, 64): the columns each brick of a row touches (ALE columns 8 + 8k .. 15 + 8k, times 64/160)."""
_SLOT_FULL = np.stack([_span(np.ceil(3.2 + 3.2 * k), np.floor(6.4 + 3.2 * k), 64)
                       for k in range(18)]).astype(np.float32)
"""(18, 64): the 2-3 columns each brick covers whole (no blend with its neighbours)."""
DIM_CHROMA = 30
"""Chroma over which a pixel is visibly coloured, if dimly: over a decoder's haze on black (19-30)."""


def standing_pixels(frame: np.ndarray) -> np.ndarray:
    """(16, 64) bool over `BRICK_ROWS`: the pixels a brick touches, blended edges included, where the ball
    cannot be told apart.

    A brick counts here if two of its whole columns are visibly coloured at its centre row (`DIM_CHROMA`), not by
    its centre pixel (`bricks`): a ball passing through the gap of a broken brick lights one column and must not
    make a brick that hides it, while a dim brick-wide smudge a decoder leaves where a brick broke is no ball."""
    f = frame[list(BRICK_ROW_Y)].astype(np.int16)  # (6, 64, 3): the centre row of each brick row
    lit = ((f.max(-1) - f.min(-1)) > DIM_CHROMA).astype(np.float32)  # (6, 64)
    solid = (lit @ _SLOT_FULL.T >= 2).astype(np.float32)  # (6, 18): whole columns lit per brick
    return (_SLOT_ROWS.T @ (solid @ _SLOT_COLS)) > 0  # (16, 6) @ (6, 64) -> (16, 64)


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


MAX_LIVES = 5
"""Breakout's lives digit shows 1..5; other readings (8 or no digit) are the max-pool blend of two digits."""


def ball_positions(frames: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(M, 2) float32 ball centre (x, y) of each frame by `detect`, NaN where no ball is visible.

    Reads a memory map in chunks, so 200k frames (3 GB) never sit in memory at once.
    """
    out = np.full((len(frames), 2), np.nan, np.float32)
    for i in range(0, len(frames), chunk):
        part = np.asarray(frames[i : i + chunk])
        out[i : i + len(part)] = ball_xy([detect(f) for f in part])
    return out


def ball_xy(objs: list[Objects]) -> np.ndarray:
    """(M, 2) float32 ball centre (x, y) of readings already made, NaN where no ball is visible."""
    out = np.full((len(objs), 2), np.nan, np.float32)
    for j, o in enumerate(objs):
        if o.ball_x is not None and o.ball_y is not None:
            out[j] = (o.ball_x, o.ball_y)
    return out


def lives_shown(frames: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(M,) int8 lives digit of each frame (`read_scoreboard(...).lives`), -1 where it is a blend or no digit."""
    out = np.full(len(frames), -1, np.int8)
    for i in range(0, len(frames), chunk):
        for j, f in enumerate(np.asarray(frames[i : i + chunk]), start=i):
            d = read_digit(f, 3)  # the lives cell, as read_scoreboard reads it, without the 3 score cells
            if d is not None and d <= MAX_LIVES:
                out[j] = d
    return out
