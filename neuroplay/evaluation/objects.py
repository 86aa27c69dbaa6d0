"""Object fidelity: does a reconstructed or dreamed frame show what the real frame shows?

PSNR cannot see the ball (2 of 5,376 pixels): a VQ-VAE that erased it scored 36.8 dB. These figures compare the
game's objects as `neuroplay.envs.breakout` reads them, frame by frame, between a real frame and the frame
under test (a VQ reconstruction of it, or the model's prediction of it):

- ball: `ball_recall` = real balls matched (the test frame shows a ball within `BALL_MATCH_PX`) / real balls;
  `ball_precision` = matched / balls shown; `false_ball_rate` = frames whose test frame shows a ball that is
  not matched / all frames; `ball_pos_err` = median distance of the matched balls (px);
- paddle: `paddle_recall` (a paddle shown where the real one is, within `PADDLE_MATCH_PX`), `paddle_x_err`;
- `bricks_agree`: the standing bricks of every row are the same count;
- `score_agree`, `lives_agree`, `digits_agree`: the scoreboard reads the same (score, lives, both).

`ObjectTally` sums over batches; `summary()` gives the figures; `VQ_GATES` are the tokenizer's gates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neuroplay.envs.breakout import bricks_per_row, detect, read_scoreboard

BALL_MATCH_PX = 3.0
"""A shown ball within this distance of the real one is the same ball (it moves at most ~4 px a step)."""
PADDLE_MATCH_PX = 4.0
"""A shown paddle within this distance of the real one is the same paddle."""

VQ_GATES: dict[str, tuple[str, float]] = {
    "ball_recall": (">=", 0.98),
    "false_ball_rate": ("<=", 0.005),
    "ball_pos_err": ("<=", 0.75),
    "paddle_recall": (">=", 1.0),
    "bricks_agree": (">=", 0.99),
    "digits_agree": (">=", 0.99),
    "psnr": (">=", 36.0),
}
"""The tokenizer's gates, on held-out frames."""


class ObjectTally:
    """Running object agreement between real frames and test frames (uint8 (n, 84, 64, 3) each)."""

    def __init__(self) -> None:
        self.n = 0
        self.ball_real = self.ball_shown = self.ball_matched = self.ball_false = 0
        self.paddle_real = self.paddle_matched = 0
        self.bricks_ok = self.score_ok = self.lives_ok = self.digits_ok = 0
        self.ball_err: list[float] = []
        self.paddle_err: list[float] = []

    def add(self, real: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Tally a batch; returns per-frame (n,) bool: the real ball was lost (for picking examples)."""
        lost = np.zeros(len(real), bool)
        for i, (r, t) in enumerate(zip(real, test)):
            lost[i] = self._one(r, t)
        return lost

    def _one(self, r: np.ndarray, t: np.ndarray) -> bool:
        a, b = detect(r), detect(t)
        self.n += 1
        matched = False
        if a.ball_visible:
            self.ball_real += 1
            if b.ball_visible:
                d = math.hypot(a.ball_x - b.ball_x, a.ball_y - b.ball_y)  # type: ignore[operator]
                matched = d <= BALL_MATCH_PX
                if matched:
                    self.ball_matched += 1
                    self.ball_err.append(d)
        if b.ball_visible:
            self.ball_shown += 1
            self.ball_false += not matched
        if a.paddle_x is not None:
            self.paddle_real += 1
            if b.paddle_x is not None and abs(a.paddle_x - b.paddle_x) <= PADDLE_MATCH_PX:
                self.paddle_matched += 1
                self.paddle_err.append(abs(a.paddle_x - b.paddle_x))
        self.bricks_ok += bool((bricks_per_row(r) == bricks_per_row(t)).all())
        sa, sb = read_scoreboard(r), read_scoreboard(t)
        self.score_ok += sa.score == sb.score
        self.lives_ok += sa.lives == sb.lives
        self.digits_ok += sa == sb
        return a.ball_visible and not matched

    def summary(self) -> dict[str, Any]:
        """The figures of the module docstring (None where nothing was there to count)."""
        ratio = lambda a, b: a / b if b else None
        return {
            "n_frames": self.n, "n_real_balls": self.ball_real,
            "ball_recall": ratio(self.ball_matched, self.ball_real),
            "ball_precision": ratio(self.ball_matched, self.ball_shown),
            "false_ball_rate": ratio(self.ball_false, self.n),
            "ball_pos_err": float(np.median(self.ball_err)) if self.ball_err else None,
            "paddle_recall": ratio(self.paddle_matched, self.paddle_real),
            "paddle_x_err": float(np.median(self.paddle_err)) if self.paddle_err else None,
            "bricks_agree": ratio(self.bricks_ok, self.n),
            "score_agree": ratio(self.score_ok, self.n),
            "lives_agree": ratio(self.lives_ok, self.n),
            "digits_agree": ratio(self.digits_ok, self.n),
        }


def object_agreement(real: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """`ObjectTally` over one set of frames."""
    t = ObjectTally()
    t.add(real, test)
    return t.summary()


def gates(figures: dict[str, Any], table: dict[str, tuple[str, float]] = VQ_GATES) -> dict[str, bool]:
    """Which gates hold (a missing figure fails)."""
    out = {}
    for k, (op, v) in table.items():
        x = figures.get(k)
        out[k] = x is not None and (x >= v if op == ">=" else x <= v)
    return out


def vq_score(figures: dict[str, Any]) -> float:
    """One number to pick a VQ checkpoint by what a player sees: gates passed, then how close each is.

    Every gate counts 1 when it holds, else its fraction of the way there; PSNR is only one of seven, so a
    sharper background never buys a lost ball.
    """
    f = figures
    parts = [
        min(1.0, (f.get("ball_recall") or 0) / 0.98),
        max(0.0, 1 - max(0.0, (f.get("false_ball_rate") or 0) - 0.005) * 20),
        min(1.0, 0.75 / max(f.get("ball_pos_err") or 9.0, 1e-6)),
        f.get("paddle_recall") or 0,
        min(1.0, (f.get("bricks_agree") or 0) / 0.99),
        min(1.0, (f.get("digits_agree") or 0) / 0.99),
        min(1.0, (f.get("psnr") or 0) / 36.0),
    ]
    return float(sum(parts))
