"""The evaluation's data access: episode files addressed as one (`EvalData`), and their frames as the model
and the metrics need them (`FrameSource`): tokens, [0, 1] pixels, mirrored tokens, and the dreams that start
from a state's real context.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroplay.checkpoint import tokens_identity
from neuroplay.config import Action
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.breakout import Objects, bricks, detect, lives_shown
from neuroplay.errors import UsageError
from neuroplay.evaluation.dreamer import Dreamers
from neuroplay.models.vqvae import to_uint8_image

NOOP, FIRE, RIGHT, LEFT = (int(a) for a in Action)
CPU_VQ_BATCH = 16
"""Frames per VQ encode/decode call on a CPU: the lite VQ decodes 4.1 ms a frame at 16, 5.7 at 64 (out of cache)
and 8.4 at 1 (2 AVX2 cores, measured)."""
MIRROR_ACTION = (NOOP, FIRE, LEFT, RIGHT)


class EvalData:
    """Episode files addressed as one, frames read on demand: memory maps stay maps (no copy of the data)."""

    def __init__(self, parts: Episodes | list[Episodes]) -> None:
        self.parts = [parts] if isinstance(parts, Episodes) else list(parts)
        if not self.parts:
            raise DatasetError("--data: no dataset file given")
        kinds = {p.frames is not None for p in self.parts}
        if len(kinds) != 1:
            raise DatasetError("--data: cannot mix pixel files and token files")
        self.kind = "frames" if kinds.pop() else "tokens"
        self.episode_lengths = np.concatenate([p.episode_lengths for p in self.parts]).astype(np.int64)
        self.actions = np.concatenate([np.asarray(p.actions) for p in self.parts])
        self.frame_offsets = np.concatenate([[0], np.cumsum(self.episode_lengths + 1)[:-1]]).astype(np.int64)
        self.transition_offsets = np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)
        self._row0 = np.cumsum([0] + [len(p.images) for p in self.parts])
        self.metas = [p.meta for p in self.parts]
        self.sources: list[FrameSource] = []
        """`FrameSource.of`'s sources of this data, one per VQ and device."""
        self.replay: Any = None
        """`realgame.Replay.of`'s emulator states of this data (made on first use)."""

    def check_tokens_of(self, paths: list[str], vq_info: dict[str, Any], vq_dir: str | Path) -> None:
        """Token files must come from this VQ-VAE (`vq_info`, its config, in `vq_dir`; a decoder fine-tuned with
        the codes kept counts, `tokens_identity`): decoded with another, every frame the metrics and probes read
        would be noise. One clear line naming the file otherwise."""
        ok = (None, *tokens_identity(vq_info))
        for p, meta in zip(paths, self.metas):
            if self.kind == "tokens" and meta.get("vq_checkpoint_hash") not in ok:
                raise DatasetError(f"{p}: tokens come from another VQ-VAE than {vq_dir}; evaluate the pixel file "
                                   "or re-tokenize")

    @property
    def n_rows(self) -> int:
        """Frames in all files."""
        return int(self._row0[-1])

    @property
    def n_episodes(self) -> int:
        return len(self.episode_lengths)

    def rows(self, samples: np.ndarray, k: int | np.ndarray = 0) -> np.ndarray:
        """Global frame row of t+k for each (episode, t), shaped as `_offset` says."""
        return _offset(self.frame_offsets[samples[:, 0]] + samples[:, 1], k)

    def actions_at(self, samples: np.ndarray, k: int | np.ndarray = 0) -> np.ndarray:
        """Action taken at t+k of each (episode, t), shaped as `_offset` says (the caller keeps t+k inside
        the episode)."""
        return self.actions[_offset(self.transition_offsets[samples[:, 0]] + samples[:, 1], k)]

    def images(self, rows: np.ndarray) -> np.ndarray:
        """uint8 frames (n, 84, 64, 3) or tokens (n, 21, 16) of global rows, gathered part by part."""
        part = np.searchsorted(self._row0, rows, side="right") - 1
        first = self.parts[0].images
        out = np.empty((len(rows), *first.shape[1:]), np.uint8)
        for p in np.unique(part):
            m = part == p
            out[m] = self.parts[p].images[rows[m] - self._row0[p]]
        return out


def _offset(base: np.ndarray, k: int | np.ndarray) -> np.ndarray:
    """base (n,) plus k: an int gives (n,); offsets (m,) or per-sample offsets (n, m) give (n, m)."""
    k = np.asarray(k)
    return base + k if k.ndim == 0 else base[:, None] + k


class FrameSource:
    """Tokens and [0, 1] pixels of data rows: a pixel file is encoded with the VQ, a token file decoded.

    A row's tokens (a pixel file's VQ codes), its mirrored tokens and the detector's reading of its real frame
    are computed once and remembered: the metrics, every probe and every dream start read the same rows again
    and again, and a VQ pass costs more than the model's own work on a frame. `FrameSource.of` gives the
    evaluation's parts one source.
    """

    def __init__(self, data: EvalData, vq: Any, device: torch.device, batch: int = 64) -> None:
        if data.kind == "frames" and vq is None:
            raise UsageError("evaluating a pixel file needs a VQ-VAE to encode it")
        self.data, self.vq, self.device, self.batch = data, vq, device, batch
        self._memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """name -> (tokens (rows, 336) int16, known (rows,) bool): "codes" of a pixel file, "mirror"."""
        self._objects: dict[int, Objects] = {}
        """row -> `detect` of its real frame."""
        self._boards: dict[int, tuple[int, int]] = {}
        """row -> (lives digit, standing bricks) of its real frame."""

    @classmethod
    def of(cls, data: EvalData, vq: Any, device: torch.device, batch: int = 64) -> FrameSource:
        """The source of `data` under this VQ and device, made once per data object and then shared (with
        its memory of encoded rows) by the metrics, the probes and the gameplay probes."""
        for src in data.sources:
            if src.vq is vq and src.device == device:
                src.batch = max(src.batch, batch)
                return src
        data.sources.append(src := cls(data, vq, device, batch))
        return src

    def _remembered(self, name: str, rows: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """Tokens (n, 336) long of sorted unique `rows`, `compute(rows)` run only for rows not seen before."""
        if name not in self._memo:
            self._memo[name] = (np.zeros((self.data.n_rows, 336), np.int16), np.zeros(self.data.n_rows, bool))
        memo, known = self._memo[name]
        miss = rows[~known[rows]]
        if len(miss):
            memo[miss] = compute(miss).reshape(len(miss), -1).cpu().numpy()
            known[miss] = True
        return torch.from_numpy(memo[rows].astype(np.int64)).to(self.device)

    def _chunks(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """fn over x in VQ batches: `CPU_VQ_BATCH` frames on a CPU, `batch` elsewhere."""
        n = CPU_VQ_BATCH if self.device.type == "cpu" else self.batch
        return torch.cat([fn(x[i : i + n]) for i in range(0, len(x), n)])

    def _unique(self, fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """`fn` over (n, 336) token frames, each distinct frame once (a VQ decode costs ~10 ms a frame on a CPU,
        and an evaluation batch repeats frames: overlapping histories, LEFT and RIGHT dreams that agree)."""
        flat = tokens.reshape(-1, 336)
        u, inv = torch.unique(flat, dim=0, return_inverse=True)
        return self._chunks(fn, u)[inv]

    def decode01(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (n, 336) or (n, 21, 16) -> pixels (n, 3, 84, 64) in [0, 1]."""
        return self._unique(lambda t: (self.vq.decode(t).float().clamp(-1, 1) + 1) / 2, tokens)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 84, 64, 3) or [-1, 1] float (n, 3, 84, 64) -> tokens (n, 336)."""
        return self._chunks(lambda f: self.vq.encode(f).reshape(len(f), -1), frames)

    def fetch(self, rows: np.ndarray, pixels: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(tokens (n, 336) long, pixels (n, 3, 84, 64) in [0, 1] or None); each distinct row is read once."""
        u, inv = np.unique(rows, return_inverse=True)
        inv_t = torch.from_numpy(inv.reshape(-1)).to(self.device)
        img = lambda r: torch.from_numpy(self.data.images(r)).to(self.device)  # noqa: E731
        if self.data.kind == "frames":
            tok = self._remembered("codes", u, lambda r: self.encode(img(r)))
            pix = img(u).permute(0, 3, 1, 2).float() / 255 if pixels else None
        else:
            tok = img(u).reshape(len(u), -1).long()
            pix = self.decode01(tok) if pixels and self.vq is not None else None
        return tok[inv_t], None if pix is None else pix[inv_t]

    def mirrored(self, rows: np.ndarray) -> torch.Tensor:
        """`mirror` of the tokens of rows (n,) -> (n, 336), each distinct row computed once."""
        u, inv = np.unique(rows, return_inverse=True)
        tok = self._remembered("mirror", u, lambda r: self.mirror(self.fetch(r, pixels=False)[0]))
        return tok[torch.from_numpy(inv.reshape(-1)).to(self.device)]

    def dreamer(self, wm: Any, states: np.ndarray, use_cache: bool | None = None, mirror: bool = False) -> Dreamers:
        """A batch of dreams starting at each (episode, t) from its real context, as play's cache would hold
        it: frames max(0, t - wm.context_frames)..t and the actions taken at all but the last (fused models
        condition those frames on them). `mirror`: the context mirrored (`mirror`), LEFT and RIGHT swapped."""
        ctx = wm.context_frames
        first = np.maximum(0, states[:, 1] - ctx)
        lens = states[:, 1] - first + 1
        groups = []
        for n in np.unique(lens):
            idx = np.flatnonzero(lens == n)
            starts = np.stack([states[idx, 0], first[idx]], 1)  # (b, 2): (episode, first context frame)
            rows = self.data.rows(starts, np.arange(n)).reshape(-1)  # (b*T,)
            hist = (self.mirrored(rows) if mirror else self.fetch(rows, pixels=False)[0]).view(len(idx), n, -1)
            acts = self.data.actions_at(starts, np.arange(n - 1))  # (b, T-1): taken at all but the last
            a = torch.from_numpy(acts.astype(np.int64)).to(hist.device)
            if mirror:  # the mirrored context (b, T, 336), LEFT and RIGHT swapped
                a = torch.tensor(MIRROR_ACTION, device=a.device)[a]
            groups.append((idx, hist, a))
        return Dreamers(wm, groups, use_cache)

    def real_uint8(self, rows: np.ndarray) -> np.ndarray:
        """(n, 84, 64, 3) uint8 real frames: the file's pixels or the decoded tokens (for the detector)."""
        if self.data.kind == "frames":
            return self.data.images(rows)
        return to_uint8(self.decode01(torch.from_numpy(self.data.images(rows)).to(self.device).long()))

    def real_objects(self, rows: np.ndarray) -> list[Objects]:
        """`detect` of the real frames of rows (n,), each distinct row read once: the probes scan the same rows'
        windows over and over (a state's 30-frame future, a candidate event's 16 frames)."""
        rows = np.asarray(rows).reshape(-1)
        miss = np.array([r for r in np.unique(rows) if int(r) not in self._objects], np.int64)
        for r, f in zip(miss, self.real_uint8(miss) if len(miss) else []):
            self._objects[int(r)] = detect(f)
        return [self._objects[int(r)] for r in rows]

    def real_board(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lives digit (n,) int8 as `lives_shown` reads it, standing bricks (n,)) of the real frames of rows,
        each distinct row read once."""
        rows = np.asarray(rows).reshape(-1)
        miss = np.array([r for r in np.unique(rows) if int(r) not in self._boards], np.int64)
        if len(miss):
            frames = self.real_uint8(miss)
            for r, lv, f in zip(miss, lives_shown(frames), frames):
                self._boards[int(r)] = (int(lv), int(bricks(f).sum()))
        got = [self._boards[int(r)] for r in rows]
        return np.array([g[0] for g in got], np.int8), np.array([g[1] for g in got], np.int64)

    def mirror(self, tokens: torch.Tensor) -> torch.Tensor:
        """M(x) = encode(flip_lr(decode(x))) for tokens (..., 336)."""
        return self._unique(lambda t: self.encode(self.vq.decode(t).float().flip(-1)), tokens).reshape(tokens.shape)


def to_uint8(pix01: torch.Tensor) -> np.ndarray:
    """(n, 3, 84, 64) in [0, 1] -> (n, 84, 64, 3) uint8 numpy."""
    return to_uint8_image(pix01 * 2 - 1).cpu().numpy()
