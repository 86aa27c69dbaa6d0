"""Batches for world-model training, gathered straight from the uint8 token array.

The per-item `torch.utils.data.Dataset` views live in `neuroplay.data.datasets`; training draws whole
batches with one fancy-index per batch instead (no worker processes, no per-item Python), from RNGs
seeded per step so that a resumed run draws exactly the batches the uninterrupted run drew. Windows never
cross an episode boundary; a history that reaches before an episode's first frame repeats that frame.
Human episodes are drawn `expert_weight` times as often (the reference design). Where the token file has `events`
(launch, bounce, brick hit, lost ball: a few tokens in a few percent of frames), a training window whose
target frames hold one is drawn (1 + `event_weight`) times as often, and one that holds a lost ball (the ball
gone low, or the lives digit counting down: the rarest event, and the one the dream fails most) another
`lost_weight` times on top; val windows stay uniform, so the canary stays comparable across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuroplay.config import HISTORY
from neuroplay.data.datasets import history_rows, split_episodes
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.events import LOST


@dataclass
class _Starts:
    """Valid start frames (global rows) with their episode's first row and sampling weights."""

    rows: np.ndarray
    first: np.ndarray
    trans: np.ndarray
    weights: torch.Tensor
    event: np.ndarray | None = None
    """Per start: an event in the window's target frames (train split of a file with events only)."""
    lost: np.ndarray | None = None
    """Per start: a lost ball (`LOST`) in the window's target frames (as `event`)."""


class TokenSampler:
    """Token episodes split into train/val, with batch makers for each kind of world-model batch."""

    def __init__(self, eps: Episodes, val_fraction: float, seed: int, expert_weight: float,
                 event_weight: float = 0.0, lost_weight: float = 0.0) -> None:
        if eps.tokens is None:
            raise DatasetError("world-model training needs token files (run `neuroplay train tokenize`)")
        self.eps = eps
        self.tokens = np.asarray(eps.tokens).reshape(len(eps.tokens), -1)  # (M, 336) uint8
        self.train_e, self.val_e = split_episodes(eps.n_episodes, val_fraction, seed)
        if len(self.val_e) == 0:
            self.val_e = self.train_e
        self.expert_weight, self.event_weight, self.lost_weight = expert_weight, event_weight, lost_weight
        self.events = None if eps.events is None else np.asarray(eps.events)  # (M,) uint8 bitmask
        self._drawn = [0, 0, 0]  # train windows drawn, of which with an event, with a lost ball (since `drawn_stats`)
        if (event_weight > 0 or lost_weight > 0) and self.events is None:
            print("wm data: the token files carry no events (re-run `train tokenize`): windows are drawn uniformly")
        self.vq_sha256 = str(eps.meta.get("vq_checkpoint_hash", ""))
        self._cache: dict[tuple[str, int], _Starts] = {}

    @classmethod
    def from_files(cls, paths: list[str], val_fraction: float, seed: int, expert_weight: float,
                   event_weight: float = 0.0, lost_weight: float = 0.0) -> TokenSampler:
        if not paths:
            raise DatasetError("--data: no token file given")
        eps = Episodes.concat([Episodes.load(p) for p in paths])
        return cls(eps, val_fraction, seed, expert_weight, event_weight, lost_weight)

    @property
    def n_train_transitions(self) -> int:
        return int(self.eps.episode_lengths[self.train_e].sum())

    def _starts(self, split: str, span: int) -> _Starts:
        """Frames t from which `span` more frames exist in the same episode."""
        key = (split, span)
        if key not in self._cache:
            episodes = self.train_e if split == "train" else self.val_e
            rows, first, trans, w = [], [], [], []
            for e in episodes:
                n = int(self.eps.episode_lengths[e])
                if n < span:
                    continue
                f0, a0 = int(self.eps.frame_offsets[e]), int(self.eps.transition_offsets[e])
                t = np.arange(n - span + 1)
                rows.append(f0 + t)
                first.append(np.full_like(t, f0))
                trans.append(a0 + t)
                wt = self.expert_weight if self.eps.sources[e] == "human" else 1.0
                w.append(np.full(len(t), wt))
            if not rows:
                raise DatasetError(f"no {split} episode is long enough for windows of {span} steps")
            st = _Starts(np.concatenate(rows), np.concatenate(first), np.concatenate(trans),
                         torch.from_numpy(np.concatenate(w)))
            if split == "train" and self.events is not None:
                st.event = self._in_targets(st.rows, span, self.events > 0)
                st.lost = self._in_targets(st.rows, span, (self.events & LOST) > 0)
                st.weights = st.weights * torch.from_numpy(1.0 + self.event_weight * st.event
                                                           + self.lost_weight * st.lost)
            self._cache[key] = st
        return self._cache[key]

    @staticmethod
    def _in_targets(rows: np.ndarray, span: int, flagged: np.ndarray) -> np.ndarray:
        """Per start row t (n,): does a flagged frame (M,) bool lie among the targets t+1..t+span?"""
        c = np.concatenate([[0], np.cumsum(flagged)])
        return c[rows + span + 1] > c[rows + 1]

    def _pick(self, starts: _Starts, b: int, g: torch.Generator) -> np.ndarray:
        i = torch.multinomial(starts.weights, b, replacement=True, generator=g).numpy()
        if starts.event is not None and starts.lost is not None:
            self._drawn[0] += b
            self._drawn[1] += int(starts.event[i].sum())
            self._drawn[2] += int(starts.lost[i].sum())
        return i

    def drawn_stats(self) -> dict[str, float]:
        """{"event_share", "lost_share": shares of the train windows drawn since the last call with an event,
        with a lost ball, in the targets}, or {} for files without events: what event weighting did to the
        batches, for the scalar log."""
        n, k, lost = self._drawn
        self._drawn = [0, 0, 0]
        return {"event_share": k / n, "lost_share": lost / n} if n else {}

    def _history(self, rows: np.ndarray, first: np.ndarray, w: int = HISTORY) -> torch.Tensor:
        """Frames t-w+1..t, clamped at the episode's first frame: (B, w, 336) long."""
        idx = history_rows(rows, first, w)  # (B, w)
        return torch.from_numpy(self.tokens[idx].astype(np.int64))

    def _history_actions(self, rows: np.ndarray, first: np.ndarray, trans: np.ndarray,
                         w: int = HISTORY) -> torch.Tensor:
        """Actions taken at history frames t-w+1..t-1 (B, w-1) long, for fused models (lite2).

        `trans` is the transition row of frame t. A padding copy of the episode's first frame is followed by
        the same frame, not by a step of the game: its action is NOOP.
        """
        idx = history_rows(rows, first, w)  # (B, w)
        real = idx[:, :-1] < idx[:, 1:]  # (B, w-1): the frame is followed by the next one
        acts = self.eps.actions[np.where(real, trans[:, None] - (rows[:, None] - idx[:, :-1]), trans[:, None])]
        return torch.from_numpy(np.where(real, acts, 0).astype(np.int64))

    def rollout_batch(self, b: int, k: int, g: torch.Generator, split: str = "train") -> dict[str, torch.Tensor]:
        """history (B, 4, 336), actions (B, K), targets (B, K, 336), history_actions (B, 3): a K-step window."""
        s = self._starts(split, k)
        i = self._pick(s, b, g)
        rows, first, trans = s.rows[i], s.first[i], s.trans[i]
        acts = self.eps.actions[trans[:, None] + np.arange(k)].astype(np.int64)
        tgt = self.tokens[rows[:, None] + 1 + np.arange(k)].astype(np.int64)
        return {"history": self._history(rows, first), "actions": torch.from_numpy(acts),
                "targets": torch.from_numpy(tgt), "history_actions": self._history_actions(rows, first, trans)}

    def sequence_batch(self, b: int, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """frames (B, n, 336) and actions (B, n-1) of clips inside one episode."""
        s = self._starts("train", n - 1)
        i = self._pick(s, b, g)
        rows, trans = s.rows[i], s.trans[i]
        frames = self.tokens[rows[:, None] + np.arange(n)].astype(np.int64)
        acts = self.eps.actions[trans[:, None] + np.arange(n - 1)].astype(np.int64)
        return {"frames": torch.from_numpy(frames), "actions": torch.from_numpy(acts)}

    def val_batch(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """A fixed set of 1-step val samples (history, action, target) with a full 4-frame history."""
        s = self._starts("val", 1)
        ok = np.nonzero(s.rows - s.first >= 3)[0]
        if len(ok) == 0:
            ok = np.arange(len(s.rows))
        i = np.sort(np.random.default_rng(seed).choice(ok, min(n, len(ok)), replace=False))
        rows, first, trans = s.rows[i], s.first[i], s.trans[i]
        return {"history": self._history(rows, first),
                "history_actions": self._history_actions(rows, first, trans),
                "action": torch.from_numpy(self.eps.actions[trans].astype(np.int64)),
                "target": torch.from_numpy(self.tokens[rows + 1].astype(np.int64))}
