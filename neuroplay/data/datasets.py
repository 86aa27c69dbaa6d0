"""Train/val split and world-model samples as `torch.utils.data.Dataset`s.

The split is by episode (the reference design: 90/10, seeded), so no frame of a val episode is ever trained on.
A sample at frame t of an episode has the history t-3..t; in the first 3 steps of an episode the history
is padded by repeating the episode's first frame (the model sees a still screen, as at a real reset).
Windows never cross an episode boundary: a K-step window from t needs t+K inside the same episode.
The trainer uses the batch gatherer in `training/wm_data.py` (same rules, one fancy-index per batch);
these per-item views are for library users and for the tests that pin the rules.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from neuroplay.data.episodes import DatasetError, Episodes

HISTORY = 4


def split_episodes(n_episodes: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded episode split: (train, val) sorted index arrays; at least one val episode when n >= 2."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n_episodes)
    n_val = int(round(n_episodes * val_fraction))
    if val_fraction > 0 and n_episodes >= 2:
        n_val = max(n_val, 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def history_rows(rows: np.ndarray, first: np.ndarray, w: int = HISTORY) -> np.ndarray:
    """Rows of the w-frame histories ending at `rows` (B,), clamped at each episode's `first` row: (B, w)."""
    return np.maximum(rows[:, None] - (w - 1) + np.arange(w), first[:, None])


def episode_weights(eps: Episodes, episodes: np.ndarray, expert_weight: float = 5.0) -> np.ndarray:
    """Per-episode sampling weight: human play counts `expert_weight` times (the reference design)."""
    return np.array([expert_weight if eps.sources[e] == "human" else 1.0 for e in episodes])


class RolloutDataset(Dataset):
    """K-step windows: history (4, 21, 16), actions (K,), targets (K, 21, 16), all int64.

    K=1 gives the 1-step samples of the reference design. Works on token files (the world model's input) and on pixel
    files (then the arrays are (.., 84, 64, 3) uint8 images).
    """

    def __init__(self, eps: Episodes, episodes: np.ndarray | None = None, k: int = 1, pad_history: bool = True):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.eps, self.k = eps, k
        self.images = eps.images
        episodes = np.arange(eps.n_episodes) if episodes is None else np.asarray(episodes)
        rows, first, trans, owner = [], [], [], []
        for e in episodes:
            n = int(eps.episode_lengths[e])
            t0 = 0 if pad_history else HISTORY - 1
            t = np.arange(t0, n - k + 1)
            if len(t) <= 0:
                continue
            f0, a0 = int(eps.frame_offsets[e]), int(eps.transition_offsets[e])
            rows.append(f0 + t)
            first.append(np.full(len(t), f0))
            trans.append(a0 + t)
            owner.append(np.full(len(t), e))
        if not rows:
            raise DatasetError(f"no episode is long enough for {k}-step windows")
        self.rows, self.first = np.concatenate(rows), np.concatenate(first)
        self.trans, self.episode_of = np.concatenate(trans), np.concatenate(owner)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        r, f0, a = int(self.rows[i]), int(self.first[i]), int(self.trans[i])
        hist = history_rows(np.array([r]), np.array([f0]))[0]  # (4,) padded with the first frame
        return {
            "history": torch.from_numpy(np.asarray(self.images[hist]).astype(np.int64)),
            "actions": torch.from_numpy(self.eps.actions[a : a + self.k].astype(np.int64)),
            "targets": torch.from_numpy(np.asarray(self.images[r + 1 : r + 1 + self.k]).astype(np.int64)),
            "episode": int(self.episode_of[i]),
            "t": r - f0,
        }


def sampler_weights(ds: RolloutDataset, expert_weight: float = 5.0) -> torch.Tensor:
    """Per-sample weights for `WeightedRandomSampler` (human episodes `expert_weight`x)."""
    w = episode_weights(ds.eps, ds.episode_of, expert_weight)
    return torch.from_numpy(w)
