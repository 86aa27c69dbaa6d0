"""PSNR, defined once: 10 log10(1 / MSE) on pixels in [0, 1], capped at `PSNR_CAP` dB (a perfect match)."""

from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0
"""The PSNR of a perfect (or near-perfect) match, in dB."""


def psnr_from_mse(mse: float, cap: float = PSNR_CAP) -> float:
    """10*log10(1/mse) for pixels in [0, 1]; `cap` for a perfect (or near-perfect) match."""
    return cap if mse <= 10 ** (-cap / 10) else min(cap, 10 * math.log10(1.0 / mse))


def frame_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (dB) of uint8 frames (..., 84, 64, 3) a against b (broadcast); a single pair gives a 0-d array."""
    mse = ((a.astype(np.float32) - b.astype(np.float32)) / 255) ** 2
    return np.array([psnr_from_mse(float(m)) for m in mse.reshape(*mse.shape[:-3], -1).mean(-1).reshape(-1)]
                    ).reshape(mse.shape[:-3])
