"""The train/val split and the history rule that every world-model sample follows.

The split is by episode (the reference design: 90/10, seeded), so no frame of a val episode is ever trained on.
A sample at frame t of an episode has the history t-3..t; in the first 3 steps of an episode the history
is padded by repeating the episode's first frame (the model sees a still screen, as at a real reset).
The batches are drawn by `training/wm_data.TokenSampler`, whose tests pin these rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neuroplay.config import HISTORY
from neuroplay.errors import UsageError

if TYPE_CHECKING:
    from neuroplay.data.episodes import Episodes


def frame_indices(eps: Episodes, episodes: np.ndarray) -> np.ndarray:
    """All frame rows belonging to the given episodes."""
    offs, lens = eps.frame_offsets, eps.episode_lengths
    return np.concatenate([np.arange(offs[e], offs[e] + lens[e] + 1) for e in episodes])


def split_episodes(n_episodes: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded episode split: (train, val) sorted index arrays; at least one val episode when n >= 2."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n_episodes)
    n_val = int(round(n_episodes * val_fraction))
    if val_fraction > 0 and n_episodes >= 2:
        n_val = max(n_val, 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def history_rows(rows: np.ndarray, first: np.ndarray, w: int = HISTORY) -> np.ndarray:
    """Rows of the w-frame histories ending at `rows` (B,), clamped at each episode's `first` row: (B, w)."""
    return np.maximum(rows[:, None] - (w - 1) + np.arange(w), first[:, None])
