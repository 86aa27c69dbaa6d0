"""`neuroplay train tokenize`: encode every frame once, so world-model training never runs the encoder.

The token file has the episode layout of the frame file with `tokens` (M, 21, 16) in place of `frames` (uint8,
or uint16 past 256 codes), and records the sha256 of the tokenizer weights it came from; world-model
checkpoints carry that hash on, and loading a pair checks it. It also carries `events` (`frame_events`, read
from the pixels here, the only place that has them), so world-model training can draw windows by event.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from neuroplay.checkpoint import Tokenizer, load_tokenizer, tokens_root
from neuroplay.config import TOKEN_H, TOKEN_W, TOKENS_FILE
from neuroplay.data.episodes import Episodes, file_hash, token_dtype
from neuroplay.device import resolve_device
from neuroplay.envs.events import EVENT_BITS, frame_events


@dataclass
class TokenizeConfig:
    """Flags of `neuroplay train tokenize`."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz) to encode."""
    run_dir: str = "runs/default"
    """Run folder holding the VQ-VAE (`<run_dir>/vqvae`); the tokens are written there."""
    vq_checkpoint: str = ""
    """VQ-VAE folder (default: <run_dir>/vqvae)."""
    out: str = ""
    """Output token file (default: <run_dir>/atari_tokens_hires.npz)."""
    batch_size: int = 256
    """Frames encoded at once."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""


@torch.no_grad()
def encode_frames(vq: Tokenizer, frames: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    """uint8 frames (M, 84, 64, 3) -> tokens (M, 21, 16), uint8 for up to 256 codes, else uint16."""
    out = np.empty((len(frames), TOKEN_H, TOKEN_W), token_dtype(vq.n_codes))
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(np.array(frames[i : i + batch])).to(device)
        out[i : i + batch] = vq.encode(x).cpu().numpy().astype(out.dtype)
    return out


def tokenize(cfg: TokenizeConfig) -> Path:
    """Encode the frames of `cfg.data` and write one token file; returns its path."""
    device = resolve_device(cfg.device)
    run = Path(cfg.run_dir)
    vq_dir = Path(cfg.vq_checkpoint) if cfg.vq_checkpoint else run / "vqvae"
    vq, info = load_tokenizer(vq_dir, device)
    parts = []
    for p in cfg.data:
        eps = Episodes.load(p, mmap=True)
        tokens = encode_frames(vq, eps.frames, device, cfg.batch_size)
        events = frame_events(eps.frames, eps.rewards, eps.episode_lengths)
        meta = {**eps.meta, "vq_checkpoint_hash": tokens_root(info), "source_data_hash": file_hash(p)}
        parts.append(replace(eps, frames=None, tokens=tokens, meta=meta, events=events))
    out = Path(cfg.out) if cfg.out else run / TOKENS_FILE
    merged = Episodes.concat(parts)
    merged.meta["source_files"] = [str(p) for p in cfg.data]
    merged.meta["event_bits"] = EVENT_BITS
    merged.save(out)
    print(f"tokenize: {merged.n_episodes} episodes, {len(merged.tokens)} frames -> {out}")
    return out
