"""PSNR, defined once: 10 log10(1 / MSE) on pixels in [0, 1], capped at `PSNR_CAP` dB (a perfect match)."""

from __future__ import annotations

import math

import numpy as np

PSNR_CAP = 100.0
"""The PSNR of a perfect (or near-perfect) match, in dB."""


def psnr_from_mse(mse: float, cap: float = PSNR_CAP) -> float:
    """10*log10(1/mse) for pixels in [0, 1]; `cap` for a perfect (or near-perfect) match."""
    return cap if mse <= 10 ** (-cap / 10) else min(cap, 10 * math.log10(1.0 / mse))


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    return psnr_from_mse(float(np.mean((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2)))
