"""`neuroplay train continue`: a trained pair (the shipped one by default) continued on new episodes.

A world model reads only its own tokenizer's codes, so the new frames are encoded with the pair's VQ-VAE, which
is copied into the run folder unchanged, and the world model trains on them from the pair's weights
(`train wm --init`, a fresh optimizer). The result is a playable pair: `neuroplay play --checkpoint RUN_DIR`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from neuroplay.config import SHIPPED_CHECKPOINT, TOKENS_FILE, get_preset
from neuroplay.errors import UsageError


@dataclass
class ContinueConfig:
    """Flags of `neuroplay train continue`: a pair's world model fine-tuned on your episodes (its tokenizer kept)."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz, e.g. from `neuroplay record`) to continue on."""
    checkpoint: str = ""
    """Pair to continue (a folder with vqvae/ and wm/; default: the shipped one)."""
    run_dir: str = "runs/continued"
    """Run folder: the pair's VQ-VAE, the new tokens, the fine-tuned world model, logs."""
    steps: int = 1000
    """World-model optimizer steps."""
    minutes: float = 0.0
    """Wall-clock budget in minutes (0: steps only)."""
    lr: float = 5e-5
    """Peak learning rate: small, so the pair keeps what it knows."""
    warmup: int = 20
    """Linear warm-up steps."""
    eval_every: int = 250
    """Steps between canary checks (best checkpoint)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    seed: int = 0
    """Seed of the batches and coins."""
    resume: bool = False
    """Continue a stopped run of this command in run_dir."""
    progress_bar: bool = True
    """Show progress bars."""


def run_continue(cfg: ContinueConfig) -> Path:
    """Copy the pair's VQ-VAE, encode `cfg.data` with it, fine-tune the pair's world model; returns the run."""
    from training.tokenize import TokenizeConfig, tokenize
    from training.wm import WMTrainConfig, train_wm

    if not cfg.data:
        raise UsageError("--data: give the episode files to continue on (e.g. recordings/me.npz)")
    pair = Path(cfg.checkpoint) if cfg.checkpoint else SHIPPED_CHECKPOINT
    for sub in ("vqvae", "wm"):
        if not (pair / sub / "config.json").is_file():
            raise UsageError(f"--checkpoint {pair}: no {sub}/ checkpoint inside (a folder from `neuroplay train all`)")
    run = Path(cfg.run_dir)
    vq_dir = run / "vqvae"
    if not (vq_dir / "model.safetensors").is_file():
        run.mkdir(parents=True, exist_ok=True)
        tmp = run / "vqvae.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(pair / "vqvae", tmp)
        tmp.rename(vq_dir)  # atomic: a stopped copy never looks like a VQ-VAE
    tokens = run / TOKENS_FILE
    if not (cfg.resume and tokens.is_file()):
        tokenize(TokenizeConfig(data=list(cfg.data), run_dir=str(run), vq_checkpoint=str(vq_dir), device=cfg.device))
    preset = json.loads((pair / "wm" / "config.json").read_text()).get("preset", "")
    defaults = dict(get_preset(preset).train)
    resume = cfg.resume and (run / "last" / "wm" / "train_state.pt").is_file()
    train_wm(WMTrainConfig(**{
        **defaults, "data": [str(tokens)], "preset": preset, "run_dir": str(run), "vq_checkpoint": str(vq_dir),
        "init": "" if resume else str(pair / "wm"), "resume": resume, "steps": cfg.steps, "minutes": cfg.minutes,
        "lr": cfg.lr, "warmup": cfg.warmup, "eval_every": cfg.eval_every, "device": cfg.device, "seed": cfg.seed,
        "progress_bar": cfg.progress_bar}))
    return run
