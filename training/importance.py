"""Hybrid importance weights (the reference design) for the world-model loss.

Breakout is a black screen where under 1% of pixels change per step, so a plain cross-entropy is won by
copying. Each target token gets

    w = 1 + motion_scale * motion + eventness_scale * spike + persistence_scale * persistence

- motion: L2 distance in codebook-embedding space between the target token and the token at the same
  position in the last history frame, divided by the largest distance between two codes (so in [0, 1]).
- persistence: mean of that distance over the consecutive history pairs at the position (the ball
  moves every frame; a paddle held still does not).
- spike (eventness): motion that is unusual for that position given its recent past,
  relu(motion - persistence): a brick breaking, the ball arriving where nothing moved before.

Then the safe percentile cap: weights are clipped at `max_ratio` x the sample's median, so that the
95th percentile over the median never exceeds `max_ratio` (a static background keeps weight 1; a huge
event cannot drown the rest of the frame). Weights are returned unnormalized; the loss divides by their
sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImportanceConfig:
    """Scales of the hybrid weighting (the reference design's defaults)."""

    motion_scale: float = 2.0
    """Weight of the embedding-distance motion."""
    eventness_scale: float = 2.0
    """Weight of the spike term."""
    persistence_scale: float = 1.0
    """Weight of the multi-frame motion."""
    max_ratio: float = 6.0
    """Cap: 95th percentile / median of each sample's weights stays at or under this."""


def code_distances(codebook: torch.Tensor) -> torch.Tensor:
    """(V, D) codebook -> (V, V) L2 distances scaled so the largest is 1."""
    d = torch.cdist(codebook.float(), codebook.float())
    return d / d.max().clamp(min=1e-8)


def motion_distances(code_vectors: torch.Tensor | None, n_vocab: int, kind: str = "codebook") -> torch.Tensor:
    """(V, V) distances the motion terms read: `code_distances` of the tokenizer's code vectors (`codebook`), or 1
    between any two different codes (`binary`, and the fallback without a tokenizer). A patch code's vector is
    its pixels, so by `codebook` the 2-pixel ball moving over black is a small motion; `binary` counts every change
    of a local code as the event it is."""
    if kind == "codebook" and code_vectors is not None:
        return code_distances(code_vectors)
    if kind not in ("codebook", "binary"):
        raise ValueError(f"unknown code distance {kind!r}")
    return 1 - torch.eye(n_vocab)


def importance_weights(
    history: torch.Tensor, target: torch.Tensor, dist: torch.Tensor, cfg: ImportanceConfig = ImportanceConfig()
) -> torch.Tensor:
    """history (B, T, N) and target (B, N) token ids, dist (V, V) -> weights (B, N) float.

    Works for any leading batch shape of `target` as long as `history` has one more dim before N.
    """
    last = history[..., -1, :]
    motion = dist[target, last]  # (B, N)
    if history.shape[-2] > 1:
        pairs = dist[history[..., 1:, :], history[..., :-1, :]]  # (B, T-1, N)
        persistence = pairs.mean(-2)
    else:
        persistence = torch.zeros_like(motion)
    spike = (motion - persistence).clamp(min=0)
    w = 1 + cfg.motion_scale * motion + cfg.eventness_scale * spike + cfg.persistence_scale * persistence
    median = w.median(dim=-1, keepdim=True).values
    return torch.minimum(w, median * cfg.max_ratio)


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per token (..., N, V) vs (..., N), averaged with `weights` (..., N)."""
    ce = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
    ).view(target.shape)
    return (ce * weights).sum() / weights.sum().clamp(min=1e-8)
