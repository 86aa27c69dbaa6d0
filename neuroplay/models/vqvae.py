"""VQ-VAE v2.3 (the reference design, "Model 1": docs/design.md): 84x64 RGB frame <-> 21x16 grid of codebook indices.

Spec lines and how they are read here:
- "ResidualBlock(256)": pre-activation block, x + Conv3(GELU(GN(Conv3(GELU(GN(x)))))). The spec does not
  spell it out; this form gives the spec's ~6.0M parameters.
- "EMA updates (decay=0.99, update_every=10)": assignment counts and summed encoder outputs are
  accumulated over 10 training batches, then folded into the EMA statistics at once (Laplace-smoothed
  as in van den Oord et al.); the codebook gets no gradient, only the commitment loss trains the encoder.
- "Dead code reset (threshold=1%, every 500 batches)": a code whose share of the assignments over the
  last 500 batches is under 1% of the mean share (1/K) is re-seeded from a random encoder output of the
  current batch. Read as a share of *all* assignments, 1% would wipe the rare codes that draw the ball
  (~0.3% of tokens), so the threshold is relative to the mean share.
- "GroupNorm" with no argument in the decoder: GroupNorm(8), as in the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuroplay.config import TOKEN_H, TOKEN_W, VQConfig


@dataclass
class QuantizerOutput:
    """What the quantizer gives back."""

    z_q: torch.Tensor
    """Quantized latents with the straight-through gradient, (B, C, H, W)."""
    indices: torch.Tensor
    """Codebook indices, (B, H, W) long."""
    commitment_loss: torch.Tensor
    """||z_e - sg(z_q)||^2, unweighted scalar."""
    perplexity: torch.Tensor
    """exp(entropy) of the batch's code usage: how many codes are effectively in use."""


@dataclass
class VQVAEOutput:
    """One training forward of the VQ-VAE."""

    recon: torch.Tensor
    """Reconstruction in [-1, 1], (B, 3, 84, 64)."""
    indices: torch.Tensor
    """Token grid, (B, 21, 16) long."""
    commitment_loss: torch.Tensor
    """Unweighted commitment loss."""
    perplexity: torch.Tensor
    """Codebook perplexity of this batch."""
    latents: torch.Tensor
    """Encoder outputs before quantization, (B, C, 21, 16): where the trainer re-seeds dead codes from."""


class ResidualBlock(nn.Module):
    """Pre-activation residual block at the bottleneck."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VectorQuantizerHiRes(nn.Module):
    """EMA vector quantizer with batched EMA updates and dead-code reset (see module docstring)."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.auto_reset = True
        """Re-seed dead codes inside `forward` from random encoder outputs; a trainer that re-seeds from the
        worst-reconstructed ones turns this off and calls `reset_dead_codes` itself."""
        k, d = cfg.n_embeddings, cfg.latent_channels
        embed = torch.randn(k, d) * 0.1
        self.register_buffer("embedding", embed)
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", embed.clone())
        # Statistics gathered since the last EMA update / dead-code check.
        self.register_buffer("acc_count", torch.zeros(k))
        self.register_buffer("acc_sum", torch.zeros(k, d))
        self.register_buffer("usage", torch.zeros(k))
        self.register_buffer("n_batches", torch.zeros((), dtype=torch.long))
        self.register_buffer("n_resets", torch.zeros((), dtype=torch.long))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `flat` (N, D)."""
        emb = self.embedding.to(flat.dtype)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ emb.t() + emb.pow(2).sum(1)[None]
        return dist.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for a (B, H, W) index grid, as (B, D, H, W)."""
        return F.embedding(indices, self.embedding).permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        b, c, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, D)
        idx = self.nearest(flat.detach().float())
        z_q = F.embedding(idx, self.embedding).view(b, h, w, c).permute(0, 3, 1, 2)  # (B, D, H, W)
        commitment = F.mse_loss(z_e.float(), z_q.detach())
        one_hot = F.one_hot(idx, self.cfg.n_embeddings).float()  # (N, K)
        probs = one_hot.mean(0)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        if self.training:
            self._accumulate(flat.detach().float(), one_hot)
        z_q = z_e + (z_q.to(z_e.dtype) - z_e).detach()  # straight-through estimator
        return QuantizerOutput(z_q, idx.view(b, h, w), commitment, perplexity)

    @torch.no_grad()
    def _accumulate(self, flat: torch.Tensor, one_hot: torch.Tensor) -> None:
        counts = one_hot.sum(0)
        self.acc_count += counts
        self.acc_sum += one_hot.t() @ flat
        self.usage += counts
        self.n_batches += 1
        n = int(self.n_batches)
        if n % self.cfg.ema_update_every == 0:
            self.apply_ema()
        if self.auto_reset and n % self.cfg.dead_code_every == 0:
            self.reset_dead_codes(flat)

    @torch.no_grad()
    def apply_ema(self) -> None:
        """Fold the accumulated statistics into the EMA and recompute the codebook."""
        decay, eps = self.cfg.ema_decay, 1e-5
        self.ema_count.mul_(decay).add_(self.acc_count, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(self.acc_sum, alpha=1 - decay)
        total = self.ema_count.sum()
        k = self.cfg.n_embeddings
        smoothed = (self.ema_count + eps) / (total + k * eps) * total  # Laplace smoothing
        self.embedding.copy_(self.ema_sum / smoothed[:, None])
        self.acc_count.zero_()
        self.acc_sum.zero_()

    @torch.no_grad()
    def reset_dead_codes(self, flat: torch.Tensor, priority: torch.Tensor | None = None) -> int:
        """Re-seed codes used under `dead_code_threshold` of the mean share; returns how many.

        `flat` (N, D) are encoder outputs; with `priority` (N,) (say, each position's reconstruction error)
        the new codes are drawn from the top 2% of positions by priority instead of uniformly: a dead code
        then goes to what the codebook draws worst (the ball, a digit) rather than to more black background.
        """
        total = self.usage.sum()
        if total <= 0:
            return 0
        share = self.usage / total
        dead = share < self.cfg.dead_code_threshold / self.cfg.n_embeddings
        n_dead = int(dead.sum())
        if n_dead:
            if priority is None:
                pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
            else:
                top = priority.topk(max(n_dead, int(0.02 * len(priority)))).indices
                pick = top[torch.randperm(len(top), device=flat.device)[:n_dead]]
                pick = pick[torch.arange(n_dead, device=flat.device) % len(pick)]
            new = flat[pick] + 0.01 * torch.randn_like(flat[pick])
            self.embedding[dead] = new
            self.ema_sum[dead] = new
            self.ema_count[dead] = 1.0
            self.n_resets += n_dead
        self.usage.zero_()
        return n_dead


class VQVAE(nn.Module):
    """Encoder -> VectorQuantizerHiRes -> decoder, sized by a `VQConfig`."""

    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2, g = cfg.hidden_channels, cfg.mid_channels, cfg.latent_channels, cfg.groups
        self.encoder = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c0, 3, padding=1),
            nn.Conv2d(c0, c1, 4, stride=2, padding=1),  # 84x64 -> 42x32
            nn.GroupNorm(g, c1),
            nn.GELU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # 42x32 -> 21x16
            nn.GroupNorm(g, c2),
            nn.GELU(),
            *[ResidualBlock(c2, g) for _ in range(cfg.n_residual)],
            nn.Conv2d(c2, c2, 1),
        )
        self.quantizer = VectorQuantizerHiRes(cfg)
        self.decoder = nn.Sequential(
            nn.Conv2d(c2, c2, 1),
            *[ResidualBlock(c2, g) for _ in range(cfg.n_residual)],
            nn.Upsample(scale_factor=2, mode="nearest"),  # 21x16 -> 42x32
            nn.Conv2d(c2, c1, 3, padding=1),
            nn.GroupNorm(g, c1),
            nn.GELU(),
            nn.Upsample(scale_factor=2, mode="nearest"),  # 42x32 -> 84x64
            nn.Conv2d(c1, c0, 3, padding=1),
            nn.GroupNorm(g, c0),
            nn.GELU(),
            nn.Conv2d(c0, cfg.in_channels, 3, padding=1),
            nn.Tanh(),
        )

    @staticmethod
    def to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B,84,64,3) or (B,3,84,64) frames, or floats already in [-1,1], to (B,3,84,64) float."""
        if frames.dtype == torch.uint8:
            if frames.shape[-1] == 3:
                frames = frames.permute(0, 3, 1, 2)  # (B, 3, 84, 64)
            return frames.float() / 127.5 - 1.0
        return frames

    def forward(self, frames: torch.Tensor) -> VQVAEOutput:
        x = self.to_input(frames)
        z_e = self.encoder(x)
        q = self.quantizer(z_e)
        recon = self.decoder(q.z_q)
        return VQVAEOutput(recon, q.indices, q.commitment_loss, q.perplexity, z_e)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (uint8 or [-1,1] float) -> token grid (B, 21, 16) long."""
        x = self.to_input(frames).to(next(self.parameters()).dtype)
        z = self.encoder(x)
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()  # (B*H*W, D)
        return self.quantizer.nearest(flat).view(b, h, w)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grid (B, 21, 16) or (B, 336) -> frames (B, 3, 84, 64) in [-1, 1]."""
        if tokens.dim() == 2:
            tokens = tokens.view(tokens.shape[0], 21, 16)  # (B, 21, 16)
        z = self.quantizer.lookup(tokens.long())
        return self.decoder(z.to(next(self.parameters()).dtype))

    @property
    def n_codes(self) -> int:
        """Vocabulary size (the world model's `n_vocab`)."""
        return self.cfg.n_embeddings

    @torch.no_grad()
    def decode_uint8(self, tokens: torch.Tensor) -> np.ndarray:
        """Token grid (B, 21, 16) or (B, 336) -> uint8 frames (B, 84, 64, 3), in the decoder's dtype and layout."""
        p = next(self.decoder.parameters())
        z = self.quantizer.lookup(tokens.long().view(-1, TOKEN_H, TOKEN_W)).to(p.dtype)  # (B, D, 21, 16)
        return to_uint8_image(self.decoder(z.contiguous(memory_format=torch.channels_last))).cpu().numpy()

    def code_vectors(self) -> torch.Tensor:
        """(K, D) float: the codebook (training's importance weights measure motion in it)."""
        return self.quantizer.embedding.float()

    def for_inference(self, dtype: torch.dtype) -> None:
        """Cast the decoder, the only part that runs every dreamed frame, to `dtype`, channels-last."""
        self.decoder.to(dtype, memory_format=torch.channels_last)


def to_uint8_image(x: torch.Tensor) -> torch.Tensor:
    """Decoder output (B,3,H,W) in [-1,1] -> (B,H,W,3) uint8, the on-disk and on-screen format."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
