"""A local tokenizer: each 4x4 pixel patch of a frame is coded by the nearest entry of a codebook of real Breakout
patches, and decoded by pasting that entry back.

A token's code depends on its own 16 pixels only, so the token grid changes exactly where the pixels do: no
context can make a static brick or digit change its code, and a world model on these tokens predicts the game's
changes, not a tokenizer's. The codebook is fitted, not trained: Breakout draws few distinct patches (on 3k
frames of play, 1,386; the 256 most common cover 99.7%), so a codebook of real patches holds nearly every patch
exactly. Entries are chosen greedily among the distinct patches of a collection (`greedy_codebook`), so that
rare ones (the ball against each background) still get codes of their own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from neuroplay.config import FRAME_H, FRAME_W, TOKEN_H, TOKEN_W, PatchConfig
from neuroplay.models.vqvae import VQVAE, to_uint8_image

PATCH = FRAME_H // TOKEN_H
"""Pixels per token side (4)."""


def to_patches(frames: np.ndarray) -> np.ndarray:
    """uint8 frames (N, 84, 64, 3) -> patches (N, 336, 48), row-major over the 21x16 token grid."""
    n = len(frames)
    x = frames.reshape(n, TOKEN_H, PATCH, TOKEN_W, PATCH, 3)  # (N, 21, 4, 16, 4, 3)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, TOKEN_H * TOKEN_W, PATCH * PATCH * 3)


def from_patches(patches: np.ndarray) -> np.ndarray:
    """Patches (N, 336, 48) -> uint8 frames (N, 84, 64, 3)."""
    n = len(patches)
    x = patches.reshape(n, TOKEN_H, TOKEN_W, PATCH, PATCH, 3)  # (N, 21, 16, 4, 4, 3)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, FRAME_H, FRAME_W, 3)


class PatchTokenizer(nn.Module):
    """Frames <-> (21, 16) grids of codebook indices, each token from its own 4x4 patch alone."""

    def __init__(self, cfg: PatchConfig = PatchConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("codebook", torch.zeros(cfg.n_codes, PATCH * PATCH * 3, dtype=torch.uint8))
        """(K, 48) uint8: the patches the codes stand for."""

    @property
    def n_codes(self) -> int:
        """Vocabulary size (the world model's `n_vocab`)."""
        return self.cfg.n_codes

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, 84, 64, 3), or [-1, 1] float (B, 3, 84, 64) as `VQVAE.encode` also takes ->
        token ids (B, 21, 16): the nearest codebook patch (squared error)."""
        if frames.is_floating_point():
            frames = to_uint8_image(frames)  # (B, 84, 64, 3) uint8
        x = torch.from_numpy(to_patches(frames.cpu().numpy())).to(self.codebook.device).float()  # (B, 336, 48)
        c = self.codebook.float()  # (K, 48)
        d = (c * c).sum(-1) - 2 * x @ c.T  # (B, 336, K): |x - c|^2 without |x|^2, the same for every code
        return d.argmin(-1).view(-1, TOKEN_H, TOKEN_W)

    @torch.no_grad()
    def decode_uint8(self, tokens: torch.Tensor) -> np.ndarray:
        """Token ids (B, 21, 16) or (B, 336) -> uint8 frames (B, 84, 64, 3)."""
        p = self.codebook[tokens.reshape(len(tokens), -1).long().to(self.codebook.device)]  # (B, 336, 48)
        return from_patches(p.cpu().numpy())

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (B, 21, 16) or (B, 336) -> frames (B, 3, 84, 64) in [-1, 1], as `VQVAE.decode` gives them."""
        return VQVAE.to_input(torch.from_numpy(self.decode_uint8(tokens)).to(self.codebook.device))

    def code_vectors(self) -> torch.Tensor:
        """(K, 48) float: what each code stands for, in pixels (training's importance weights measure motion
        as the distance between the codes a token moved between)."""
        return self.codebook.float()

    def for_inference(self, dtype: torch.dtype) -> None:
        """Nothing to cast: decoding is a table lookup."""

    @classmethod
    def fit(cls, frames: np.ndarray, cfg: PatchConfig = PatchConfig()) -> PatchTokenizer:
        """A codebook for `frames` (N, 84, 64, 3) uint8, chosen among their distinct patches (`greedy_codebook`)."""
        distinct, counts = distinct_patches(frames)
        tok = cls(cfg)
        tok.codebook.copy_(torch.from_numpy(greedy_codebook(distinct, counts, cfg.n_codes)))
        return tok


def distinct_patches(frames: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The distinct 4x4 patches (P, 48) uint8 of frames (N, 84, 64, 3) and how often each occurs (P,)."""
    seen: dict[bytes, int] = {}
    for i in range(0, len(frames), chunk):
        p = to_patches(np.asarray(frames[i : i + chunk])).reshape(-1, PATCH * PATCH * 3)
        u, n = np.unique(p, axis=0, return_counts=True)
        for row, k in zip(u, n):
            key = row.tobytes()
            seen[key] = seen.get(key, 0) + int(k)
    keys = list(seen)
    return np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1), np.array([seen[k] for k in keys])


def greedy_codebook(points: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """k entries (k, 48) uint8 chosen among `points` (P, 48): the most common patch first, then again and again
    the patch that the entries so far code worst, by squared error times sqrt(count). Every entry is a real
    patch (a static background is coded exactly), and a rare patch unlike any entry (the ball over a brick
    colour) gets one before many near-copies of common ones do."""
    if len(points) <= k:  # every distinct patch gets its own code; the rest of the book repeats the first
        out = np.zeros((k, points.shape[1]), np.uint8)
        out[: len(points)] = points[np.argsort(-counts)]
        out[len(points) :] = out[0]
        return out
    x = torch.from_numpy(np.array(points)).float()  # (P, 48), a writable copy
    w = torch.from_numpy(np.sqrt(counts)).float()  # (P,)
    chosen = [int(np.argmax(counts))]
    best = ((x - x[chosen[0]]) ** 2).sum(-1)  # (P,) squared error of each point's nearest entry so far
    for _ in range(k - 1):
        j = int((best * w).argmax())
        chosen.append(j)
        best = torch.minimum(best, ((x - x[j]) ** 2).sum(-1))
    return points[np.array(chosen)]
