"""The one dataset format: several episodes in one `.npz`, uint8 on disk, validated on load.

Layout (docs/training.md, "Dataset format"):

- `frames`  (sum(N_e+1), 84, 64, 3) uint8 - or `tokens` (sum(N_e+1), 21, 16) for a token cache, uint8
  (uint16 for a codebook past 256 codes)
- `actions` (sum N_e,) uint8, `action[i]` took `frame[i]` to `frame[i+1]` of the same episode
- `rewards` (sum N_e,) float32, `dones` (sum N_e,) bool
- `episode_lengths` (E,) int64: N_e transitions of episode e, whose N_e+1 frames start at sum_{j<e}(N_j+1)
- `sources` (E,) unicode: random | sticky-random | tracker | human | ...
- `meta` 0-d unicode: a JSON object (game, preprocessing, seed, version, ...)
- `events` (sum(N_e+1),) uint8, optional: per frame, the bits of `neuroplay.envs.events.frame_events`
  (launch, lost ball, brick hit, bounce); token files carry it so training can draw windows by event

Files are written uncompressed so that `load(mmap=True)` can map the frames instead of reading them
(the spec's ~1M frames are 15 GB as pixels), and atomically: a temp file in the same folder, fsync,
then `os.replace`, so a crash or a full disk never leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroplay.config import FRAME_H, FRAME_W, N_ACTIONS, TOKEN_H, TOKEN_W
from neuroplay.errors import NeuroplayError, UsageError

FORMAT_VERSION = 1
KEYS = ("actions", "rewards", "dones", "episode_lengths", "sources", "meta")


class DatasetError(NeuroplayError, ValueError):
    """A dataset file is missing, corrupt, truncated or inconsistent (message: one line, names the file)."""


@dataclass
class Episodes:
    """Episodes stored back to back; frames (or tokens) may be a read-only memory map."""

    frames: np.ndarray | None
    """(M, 84, 64, 3) uint8 pixels, or None in a token file."""
    tokens: np.ndarray | None
    """(M, 21, 16) token ids (uint8, or uint16 past 256 codes), or None in a pixel file."""
    actions: np.ndarray
    """(T,) uint8 in [0, 4): NOOP, FIRE, RIGHT, LEFT."""
    rewards: np.ndarray
    """(T,) float32."""
    dones: np.ndarray
    """(T,) bool: the game ended with this transition (game over); False at the end of a cut episode."""
    episode_lengths: np.ndarray
    """(E,) int64: transitions per episode; episode e has episode_lengths[e] + 1 frames."""
    sources: list[str]
    """Per episode: which policy or person produced it."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON metadata (game, preprocessing, seeds, version, hashes)."""
    events: np.ndarray | None = None
    """(M,) uint8 event bits per frame row (`frame_events`), or None: files written before events load as is."""

    # ---------------------------------------------------------------- shape
    @property
    def n_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def n_transitions(self) -> int:
        return int(self.episode_lengths.sum())

    @property
    def n_frames(self) -> int:
        return self.n_transitions + self.n_episodes

    @property
    def frame_offsets(self) -> np.ndarray:
        """(E,) first row of each episode in frames/tokens."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths + 1)[:-1]]).astype(np.int64)

    @property
    def transition_offsets(self) -> np.ndarray:
        """(E,) first row of each episode in actions/rewards/dones."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)

    @property
    def images(self) -> np.ndarray:
        """The per-frame array, whichever this file has."""
        arr = self.frames if self.frames is not None else self.tokens
        assert arr is not None
        return arr

    def episode(self, e: int) -> Episodes:
        """Episode e alone (views, no copy)."""
        if not 0 <= e < self.n_episodes:
            raise IndexError(f"episode {e} out of range (file has {self.n_episodes})")
        f0, a0, n = int(self.frame_offsets[e]), int(self.transition_offsets[e]), int(self.episode_lengths[e])
        return Episodes(
            frames=None if self.frames is None else self.frames[f0 : f0 + n + 1],
            tokens=None if self.tokens is None else self.tokens[f0 : f0 + n + 1],
            actions=self.actions[a0 : a0 + n], rewards=self.rewards[a0 : a0 + n], dones=self.dones[a0 : a0 + n],
            episode_lengths=self.episode_lengths[e : e + 1].copy(), sources=[self.sources[e]], meta=dict(self.meta),
            events=None if self.events is None else self.events[f0 : f0 + n + 1],
        )

    def select(self, episodes: list[int] | np.ndarray) -> Episodes:
        """A new Episodes with the given episodes, in the given order (copies)."""
        return Episodes.concat([self.episode(int(e)) for e in episodes], meta=self.meta)

    @staticmethod
    def concat(parts: list[Episodes], meta: dict[str, Any] | None = None) -> Episodes:
        """Episodes of several files back to back; one part is returned as is (its memory map kept).

        `events` survive only if every part has them: a part without is unlabelled, not event-free, and a
        zero fill would have event-weighted sampling treat its windows as eventless (TokenSampler says so).
        """
        if not parts:
            raise DatasetError("no episodes to concatenate")
        if len(parts) == 1 and meta is None:
            return parts[0]
        kinds = {p.frames is not None for p in parts}
        if len(kinds) != 1:
            raise DatasetError("cannot mix pixel files and token files")
        has_frames = kinds.pop()

        def cat(name: str) -> np.ndarray:
            return np.concatenate([np.asarray(getattr(p, name)) for p in parts])

        if meta is None:
            meta = dict(parts[0].meta)
            if len(parts) > 1:
                meta["merged_from"] = [p.meta for p in parts]
        return Episodes(
            frames=cat("frames") if has_frames else None, tokens=None if has_frames else cat("tokens"),
            actions=cat("actions"), rewards=cat("rewards"), dones=cat("dones"),
            episode_lengths=cat("episode_lengths"), sources=[s for p in parts for s in p.sources], meta=meta,
            events=cat("events") if all(p.events is not None for p in parts) else None,
        )

    def replace(self, **changes: Any) -> Episodes:
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- checks
    def validate(self, name: str = "<memory>") -> None:
        """Raise DatasetError naming `name` and the first inconsistency."""

        def bad(msg: str) -> DatasetError:
            return DatasetError(f"{name}: {msg}")

        if (self.frames is None) == (self.tokens is None):
            raise bad("needs exactly one of 'frames' or 'tokens'")
        arr, what = (self.frames, "frames") if self.frames is not None else (self.tokens, "tokens")
        shape = (FRAME_H, FRAME_W, 3) if what == "frames" else (TOKEN_H, TOKEN_W)
        kinds = (np.uint8,) if what == "frames" else (np.uint8, np.uint16)
        if arr.dtype not in kinds or arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
            want = "uint8" if what == "frames" else "uint8 or uint16"
            raise bad(f"'{what}' must be {want} (M, {', '.join(map(str, shape))}), got {arr.dtype} {arr.shape}")
        for key, dtype in (("actions", np.uint8), ("rewards", np.float32), ("dones", np.bool_),
                           ("episode_lengths", np.int64)):
            a = getattr(self, key)
            if a.dtype != dtype or a.ndim != 1:
                raise bad(f"'{key}' must be 1-D {np.dtype(dtype)}, got {a.dtype} {a.shape}")
        lens = self.episode_lengths
        if len(lens) == 0:
            raise bad("holds no episode")
        if (lens < 0).any():
            raise bad(f"episode {int(np.argmax(lens < 0))} has a negative length")
        t = int(lens.sum())
        for key in ("actions", "rewards", "dones"):
            if len(getattr(self, key)) != t:
                raise bad(f"'{key}' has {len(getattr(self, key))} entries, episode_lengths add up to {t}")
        if len(arr) != t + len(lens):
            raise bad(f"'{what}' has {len(arr)} rows, episode_lengths need {t + len(lens)} (sum(N_e + 1))")
        if len(self.sources) != len(lens):
            raise bad(f"'sources' has {len(self.sources)} entries for {len(lens)} episodes")
        if t and int(self.actions.max()) >= N_ACTIONS:
            raise bad(f"action {int(self.actions.max())} at index {int(np.argmax(self.actions >= N_ACTIONS))} "
                      f"is outside 0..{N_ACTIONS - 1}")
        if what == "tokens" and len(arr) and "n_embeddings" in self.meta:
            k = int(self.meta["n_embeddings"])
            if int(arr.max()) >= k:
                raise bad(f"token id {int(arr.max())} is outside the codebook of {k}")
        if not np.isfinite(self.rewards).all():
            raise bad("'rewards' holds NaN or inf")
        ev = self.events
        if ev is not None and (ev.dtype != np.uint8 or ev.ndim != 1 or len(ev) != len(arr)):
            raise bad(f"'events' must be 1-D uint8 with one entry per {what} row ({len(arr)}), "
                      f"got {ev.dtype} {ev.shape}")

    # ---------------------------------------------------------------- io
    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + fsync + rename); a full disk raises DatasetError, old file intact."""
        path = Path(path)
        self.validate(str(path))
        meta = {"format_version": FORMAT_VERSION, **self.meta}
        arrays = {
            "frames" if self.frames is not None else "tokens": np.asarray(self.images),
            "actions": self.actions, "rewards": self.rewards, "dones": self.dones,
            "episode_lengths": self.episode_lengths,
            "sources": np.asarray(self.sources, dtype="<U16"), "meta": np.asarray(json.dumps(meta)),
        }
        if self.events is not None:
            arrays["events"] = np.asarray(self.events)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                tmp.unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise DatasetError(f"{path}: disk full while saving; the previous file (if any) is intact") from e
            raise DatasetError(f"{path}: cannot write ({e.strerror or e})") from e
        return path

    @staticmethod
    def load(path: str | Path, mmap: bool = False) -> Episodes:
        """Read and validate a file; `mmap=True` maps frames/tokens instead of reading them."""
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such file")
        try:
            with zipfile.ZipFile(path) as zf:
                names = {n.removesuffix(".npy") for n in zf.namelist()}
                big = "frames" if "frames" in names else "tokens" if "tokens" in names else None
                if big is None:
                    raise DatasetError(f"{path}: not a neuroplay dataset (no 'frames' or 'tokens' array)")
                missing = [k for k in KEYS if k not in names]
                if missing:
                    raise DatasetError(f"{path}: missing array '{missing[0]}'")
                small = {k: _read_member(zf, k) for k in KEYS + (("events",) if "events" in names else ())}
                images = _map_member(path, zf, big) if mmap else None
                if images is None:
                    images = _read_member(zf, big)
        except DatasetError as e:
            if str(path) in str(e):
                raise
            raise DatasetError(f"{path}: {e}") from e
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{path}: corrupt or truncated file ({e.__class__.__name__}: {e})") from e
        try:
            meta = json.loads(str(small["meta"][()]))
            assert isinstance(meta, dict)
        except (ValueError, AssertionError, IndexError) as e:
            raise DatasetError(f"{path}: 'meta' is not a JSON object") from e
        eps = Episodes(
            frames=images if big == "frames" else None, tokens=images if big == "tokens" else None,
            actions=small["actions"], rewards=small["rewards"], dones=small["dones"],
            episode_lengths=small["episode_lengths"], sources=[str(s) for s in small["sources"].reshape(-1)],
            meta=meta, events=small.get("events"),
        )
        eps.validate(str(path))
        return eps

    # ---------------------------------------------------------------- reports
    def summary(self) -> dict[str, Any]:
        lens = self.episode_lengths
        by_source: dict[str, dict[str, int]] = {}
        for s, n in zip(self.sources, lens):
            d = by_source.setdefault(s, {"episodes": 0, "transitions": 0})
            d["episodes"] += 1
            d["transitions"] += int(n)
        counts = np.bincount(self.actions, minlength=N_ACTIONS) if len(self.actions) else np.zeros(N_ACTIONS)
        returns = [float(self.episode(e).rewards.sum()) for e in range(self.n_episodes)]
        return {
            "kind": "frames" if self.frames is not None else "tokens",
            "episodes": self.n_episodes, "transitions": self.n_transitions, "frames": self.n_frames,
            "episode_length": {"min": int(lens.min()), "median": float(np.median(lens)), "max": int(lens.max())},
            "return": {"mean": float(np.mean(returns)), "max": float(np.max(returns))},
            "actions": {n: int(c) for n, c in zip(("NOOP", "FIRE", "RIGHT", "LEFT"), counts)},
            "sources": by_source, "bytes_per_frame": int(np.prod(self.images.shape[1:])), "meta": self.meta,
        }


def token_dtype(n_codes: int) -> type[np.unsignedinteger]:
    """The on-disk dtype of token ids from a codebook of `n_codes`: uint8 up to 256, else uint16."""
    return np.uint8 if n_codes <= 256 else np.uint16


def refuse_existing(out: Path, overwrite: bool) -> None:
    """An output file is never replaced unless asked (`--overwrite`): it may hold a person's recordings."""
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out}: already exists; choose a new name, or pass --overwrite to replace it")


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (ties token caches and eval indices to the data they came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = _read_header(f, version)
        if dtype.hasobject:
            raise DatasetError(f"'{name}' holds Python objects (pickles are refused)")
        count = int(np.prod(shape)) if shape else 1
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise EOFError(f"'{name}' is truncated")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _read_header(f: Any, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _map_member(path: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray | None:
    """Memory-map an uncompressed `.npy` member in place; None if it is compressed."""
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {name}")
        n_name, n_extra = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + n_name + n_extra)
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = _read_header(f, version)
        offset = f.tell()
    if dtype.hasobject or fortran:
        return None
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise EOFError(f"'{name}' is truncated")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
