"""Frozen evaluation indices (the reference design's gold suite): which samples each tier scores, picked once.

A sample is (episode, t): frame t of an episode with t >= 3 (a full 4-frame history t-3..t, no padding)
and t+1 inside the episode; a horizon-h figure uses the samples with t+h inside it. Per split the file
holds three tiers, each in a seeded random order (so any prefix is itself a random subset):
canary (500 samples), fastval (6000, round-robin over the action taken at t: the four actions as balanced
as the data allows) and gold (all samples).

The file records the data it was made for (sha256 of each file; for token files also the hashes of the
pixel files they were encoded from, so a pixel file and its token cache share indices) and refuses other
data: indices into another file would silently score other frames, and figures would stop comparing.
Hashing a multi-GB file takes seconds, so a file whose path, size and mtime match the record is trusted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroplay.checkpoint import atomic_write_bytes
from neuroplay.config import N_ACTIONS
from neuroplay.data.datasets import split_episodes
from neuroplay.data.episodes import DatasetError, file_hash
from neuroplay.errors import UsageError

INDICES_FILE = "gold_eval_indices.json"
FORMAT = "neuroplay-gold-eval-indices"
VERSION = 1
MIN_T = 3
"""First frame with a full 4-frame history."""
TIER_SIZES: dict[str, int | None] = {"canary": 500, "fastval": 6000, "gold": None}
SPLITS = ("val", "all")


def all_samples(episode_lengths: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """(n, 2) int64 (episode, t) for every t >= 3 with t+1 inside the episode, episodes in the given order."""
    parts = []
    for e in episodes:
        t = np.arange(MIN_T, int(episode_lengths[e]), dtype=np.int64)  # t <= N_e - 1
        parts.append(np.stack([np.full_like(t, int(e)), t], 1))
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)


def pick_tiers(samples: np.ndarray, actions_at: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Canary, fastval and gold as (n, 2) arrays in seeded random order; `actions_at[i]` is sample i's action."""
    out: dict[str, np.ndarray] = {}
    for code, (tier, size) in enumerate(TIER_SIZES.items()):
        order = np.random.default_rng([seed, code]).permutation(len(samples))
        if tier == "fastval":  # round-robin over actions: rank within the action first, then the action
            a = actions_at[order]
            rank = np.zeros(len(order), np.int64)
            for k in range(N_ACTIONS):
                idx = np.nonzero(a == k)[0]
                rank[idx] = np.arange(len(idx))
            order = order[np.lexsort((a, rank))]
        out[tier] = samples[order[: size if size is not None else len(order)]]
    return out


def origins_of(meta: dict[str, Any], own_hash: str) -> list[str]:
    """Hashes of the pixel files a token file was encoded from (tokenize records them), else the file's own."""
    merged = meta.get("merged_from")
    if isinstance(merged, list) and merged and all(isinstance(m, dict) and m.get("source_data_hash") for m in merged):
        return [str(m["source_data_hash"]) for m in merged]
    if meta.get("source_data_hash") and not merged:
        return [str(meta["source_data_hash"])]
    return [own_hash]


def data_identity(paths: list[str], metas: list[dict[str, Any]], known: list[dict[str, Any]] | None = None
                  ) -> list[dict[str, Any]]:
    """Per file: path, size, mtime, sha256 and origins; a file matching a `known` record is not re-hashed."""
    recs = {r.get("path"): r for r in (known or [])}
    out = []
    for p, meta in zip(paths, metas):
        path = Path(p).resolve()
        st = path.stat()
        rec = recs.get(str(path))
        if rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
            sha = str(rec["sha256"])
        else:
            sha = file_hash(path)
        out.append({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha,
                    "origins": origins_of(meta, sha)})
    return out


def same_data(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Same files, or the same pixel files behind them (a pixel file and its token cache match)."""
    if [r["sha256"] for r in a] == [r["sha256"] for r in b]:
        return True
    return [o for r in a for o in r["origins"]] == [o for r in b for o in r["origins"]]


@dataclass
class EvalIndices:
    """The parsed indices file."""

    path: Path
    data: list[dict[str, Any]]
    n_episodes: int
    val_fraction: float
    seed: int
    splits: dict[str, dict[str, Any]]
    current: list[dict[str, Any]] = field(default_factory=list)
    """Identity of the data these indices were just checked against (not stored)."""

    def samples(self, split: str, tier: str) -> np.ndarray:
        """(n, 2) int64 (episode, t) of a tier, in its frozen order."""
        d = self.splits[split]["tiers"][tier]
        return np.stack([np.asarray(d["episode"], np.int64), np.asarray(d["t"], np.int64)], 1).reshape(-1, 2)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "data": self.data, "n_episodes": self.n_episodes,
                "val_fraction": self.val_fraction, "seed": self.seed, "splits": self.splits}


def split_of(n_episodes: int, split: str, val_fraction: float, seed: int) -> np.ndarray:
    """Episodes a split evaluates: the val episodes of training's seeded split, or all of them."""
    if split not in SPLITS:
        raise UsageError(f"--split: unknown split {split!r} (val or all)")
    if split == "all":
        return np.arange(n_episodes)
    val = split_episodes(n_episodes, val_fraction, seed)[1]
    if len(val) == 0:
        raise DatasetError(f"--split val: {n_episodes} episode(s) leave no val episode; use --split all")
    return val


def load_or_create(
    path: str | Path, paths: list[str], metas: list[dict[str, Any]], episode_lengths: np.ndarray,
    actions_at: Any, split: str, val_fraction: float = 0.1, seed: int = 0,
) -> tuple[EvalIndices, bool]:
    """Read `path` (checking it was made for this data) or freeze new indices there; returns (indices, written).

    `actions_at(samples)` gives the action taken at each (episode, t). A split missing from an existing file
    is added; the tiers already frozen are never changed.
    """
    path = Path(path)
    n_ep = len(episode_lengths)
    if path.is_file():
        idx = _read(path)
        ident = data_identity(paths, metas, idx.data)
        if not same_data(ident, idx.data) or idx.n_episodes != n_ep:
            made = ", ".join(f"{Path(r['path']).name} ({r['sha256'][:12]})" for r in idx.data)
            given = ", ".join(f"{Path(r['path']).name} ({r['sha256'][:12]})" for r in ident)
            raise DatasetError(f"{path}: eval indices were frozen for {made}, not for {given}; "
                               "pass --indices NEW.json to freeze indices for this data")
        if (idx.val_fraction, idx.seed) != (val_fraction, seed):
            raise UsageError(f"{path}: indices were made with --val-fraction {idx.val_fraction} --seed {idx.seed}, "
                             f"not {val_fraction} / {seed}; use those or another --indices file")
        idx.current = ident
        if split in idx.splits:
            return idx, False
    else:
        ident = data_identity(paths, metas)
        idx = EvalIndices(path, ident, n_ep, val_fraction, seed, {}, ident)
    episodes = split_of(n_ep, split, val_fraction, seed)
    samples = all_samples(episode_lengths, episodes)
    if len(samples) == 0:
        raise DatasetError(f"{paths[0]}: no {split} episode has 5 frames (a 4-frame history and a target)")
    tiers = pick_tiers(samples, np.asarray(actions_at(samples)), seed)
    idx.splits[split] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "episodes": [int(e) for e in episodes],
        "tiers": {k: {"episode": v[:, 0].tolist(), "t": v[:, 1].tolist()} for k, v in tiers.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(idx.to_json()) + "\n").encode())
    return idx, True


def _read(path: Path) -> EvalIndices:
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise UsageError("not a neuroplay eval indices file")
        if int(d.get("version", 0)) > VERSION:
            raise UsageError(f"version {d['version']} is newer than this neuroplay")
        return EvalIndices(path, list(d["data"]), int(d["n_episodes"]), float(d["val_fraction"]), int(d["seed"]),
                           dict(d["splits"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: unreadable eval indices ({e})") from e
