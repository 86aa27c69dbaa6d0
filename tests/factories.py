"""The tests' one factory of random-init models, engines and tokens (what `tiny_run` is for trained ones)."""

from __future__ import annotations

from dataclasses import replace

import torch

from neuroplay.config import get_preset
from neuroplay.engine import DreamEngine
from neuroplay.models.decoding import ARGMAX
from neuroplay.models.vqvae import VQVAE
from neuroplay.models.world_model import TemporalWorldModel

ATOL = 2e-4
"""fp32 float error between two orders of the same sums (logits are O(1))."""


def random_tokens(shape: tuple[int, ...], seed: int = 0, n_vocab: int = 32) -> torch.Tensor:
    return torch.randint(n_vocab, shape, generator=torch.Generator().manual_seed(seed))


def random_model(preset: str, seed: int = 0, n_layers: int | None = None, action_layer: int | None = None,
                 sharpen: float = 1.0, out_scale: float = 1.0) -> TemporalWorldModel:
    """A random-init world model of `preset` (optionally deeper, or with the action at another layer), with the
    action bias scaled up so that actions visibly change the logits. `sharpen` and `out_scale` scale the
    attention's projections so that each token reads a few keys, not a blur of all: a prediction then depends on
    its oldest context frame (at random init it barely does)."""
    torch.manual_seed(seed)
    cfg = get_preset(preset).wm
    if n_layers is not None:
        cfg = replace(cfg, n_layers=n_layers)
    if action_layer is not None:
        cfg = replace(cfg, action_layer=action_layer)
    wm = TemporalWorldModel(cfg).eval()
    if cfg.code_features:  # a patch tokenizer's pixels, here random
        wm.set_code_features(torch.rand(cfg.n_vocab, cfg.code_features, generator=torch.Generator().manual_seed(seed)))
    with torch.no_grad():
        wm.action_spatial_bias.mul_(25.0)
        for blk in wm.blocks:
            blk.attn.qkv.weight.mul_(sharpen)
            blk.attn.out.weight.mul_(out_scale)
    return wm


def random_pair(preset: str, seed: int = 0) -> tuple[VQVAE, TemporalWorldModel]:
    """A random-init VQ-VAE and world model of `preset` (`random_model`)."""
    wm = random_model(preset, seed)
    return VQVAE(get_preset(preset).vq).eval(), wm


def random_engine(preset: str, seed: int = 0, **kw: object) -> DreamEngine:
    """A random-init engine in fp32, decoding by argmax unless told (its logits are near-uniform: a sampling
    decoder would draw noise)."""
    vq, wm = random_pair(preset, seed)
    kw.setdefault("decode", ARGMAX)
    return DreamEngine(vq, wm, "cpu", "fp32", **kw)  # type: ignore[arg-type]
