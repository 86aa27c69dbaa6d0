"""Image logs of world-model training: real frames above open-loop rollouts, decoded."""

from __future__ import annotations

import torch

from neuroplay.checkpoint import Tokenizer
from neuroplay.models.world_model import TemporalWorldModel
from training.common import image_grid


@torch.no_grad()
def rollout_grid(
    model: TemporalWorldModel, vq: Tokenizer, batch: dict[str, torch.Tensor], device: torch.device
) -> torch.Tensor:
    """(2H, K*W, 3) uint8: the real K frames of a val window above the model's K-step dream of them."""
    model.eval()
    hist = batch["history"][:1].to(device)  # (1, 4, 336)
    actions = batch["actions"][:1].to(device)  # (1, K)
    h_act = batch["history_actions"][:1].to(device)  # (1, 3): fused models condition history frames on them
    dream = []
    for k in range(actions.shape[1]):
        nxt = model.predict_next(hist, actions[:, k], history_actions=h_act)
        dream.append(nxt)
        hist = torch.cat([hist[:, 1:], nxt[:, None]], 1)  # roll: (1, 4, 336)
        h_act = torch.cat([h_act[:, 1:], actions[:, k : k + 1]], 1)  # roll: (1, 3)
    real = batch["targets"][0].to(device)  # (K, 336)
    return image_grid([torch.from_numpy(vq.decode_uint8(real)), torch.from_numpy(vq.decode_uint8(torch.cat(dream)))])
