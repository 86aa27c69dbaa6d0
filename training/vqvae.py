"""`neuroplay train vqvae`: fit the VQ-VAE on frames of the train episodes.

Loss = the object-weighted reconstruction loss of `training/vq_loss.py` (or plain MSE with `--recon mse`)
+ beta * commitment (the codebook itself moves by EMA, see the model). Dead codes are re-seeded from the
encoder outputs the decoder draws worst (`--reseed worst`). Logged: loss, PSNR, codebook perplexity, codes in
use, dead-code resets, and at every eval the object figures (`neuroplay.evaluation.objects`) on fixed val
frames; every `image_every` steps a grid of real vs reconstructed frames. The best checkpoint goes to
`<run>/vqvae`, picked by what a player sees (`vq_score`: ball, paddle, bricks, digits, PSNR), or by PSNR
alone with `--select psnr`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from neuroplay.checkpoint import read_info, save_checkpoint, tokens_root
from neuroplay.config import PRESETS, SHIPPED_PRESET, get_preset
from neuroplay.data.datasets import frame_indices, split_episodes
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.device import resolve_device
from neuroplay.evaluation.objects import ObjectTally, gates, vq_score
from neuroplay.models.vqvae import VQVAE, to_uint8_image
from neuroplay.psnr import psnr_from_mse
from training.common import (
    RunLogger,
    autocast,
    check_finite,
    image_grid,
    load_resume,
    load_weights,
    lr_at,
    progress,
    save_resume,
    seed_step,
    step_generator,
)
from training.vq_loss import ReconLoss, latent_error, recon_loss


@dataclass
class VQTrainConfig:
    """Flags of `neuroplay train vqvae`."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz) to train on."""
    preset: str = field(default=SHIPPED_PRESET, metadata={"choices": PRESETS})
    """Model preset (`neuroplay/config.py`); the default is the shipped model's."""
    run_dir: str = "runs/default"
    """Run folder: checkpoints, logs, TensorBoard."""
    steps: int = 6000
    """Optimizer steps."""
    epochs: float = 0.0
    """Train this many epochs instead (0: use --steps)."""
    batch_size: int = 32
    """Frames per batch."""
    lr: float = 1e-3
    """Peak learning rate (Adam)."""
    warmup: int = 200
    """Linear warm-up steps."""
    val_fraction: float = 0.1
    """Share of episodes held out (episode-based split, seeded)."""
    val_frames: int = 1024
    """Fixed val frames for PSNR, the object figures and the best checkpoint."""
    codes: int = 0
    """Codebook size (0: the preset's; more is a documented deviation from the reference's 32)."""
    recon: Literal["objects", "mse"] = "objects"
    """Reconstruction loss: objects (weighted, see training/vq_loss.py) or plain mse."""
    fg_weight: float = 20.0
    """objects loss: extra weight on pixels that differ from the batch's median frame."""
    red_weight: float = 20.0
    """objects loss: extra weight on the ball and paddle pixels (the detector's red mask, dilated)."""
    worst_frac: float = 0.002
    """objects loss: share of each frame's pixels in the worst-pixel term."""
    worst_weight: float = 1.0
    """objects loss: weight of the worst-pixel term (0: off)."""
    reseed: Literal["worst", "random"] = "worst"
    """Dead codes re-seeded from the worst-reconstructed encoder outputs, or random ones (the reference)."""
    select: Literal["objects", "psnr"] = "objects"
    """Best checkpoint by the object figures (vq_score) or by val PSNR alone."""
    split_seed: int = 0
    """Seed of the train/val episode split and the val frames (keep it when changing --seed)."""
    seed: int = 0
    """Seed of the batches and the init."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 where fast), bf16 or off."""
    log_every: int = 50
    """Steps between scalar logs."""
    eval_every: int = 500
    """Steps between val PSNR checks (best checkpoint)."""
    save_every: int = 500
    """Steps between resumable checkpoints."""
    image_every: int = 1000
    """Steps between TensorBoard image grids."""
    resume: bool = False
    """Continue the run in run_dir from its last checkpoint."""
    init: str = ""
    """Start from this VQ-VAE checkpoint folder's weights (a new run: step 0, fresh optimizer)."""
    decoder_only: bool = False
    """With --init: train the decoder alone. The encoder and codebook stay bit for bit, so the tokens, and every
    world model and token file made from them, stay valid (the checkpoint says so: `tokens_of`)."""
    progress_bar: bool = True
    """Show a progress bar."""


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (measured on [0, 1])."""
    return psnr_from_mse(F.mse_loss((a.float() + 1) / 2, (b.float() + 1) / 2).item())


def train_vqvae(cfg: VQTrainConfig) -> Path:
    """Train, checkpointing into `<run_dir>/vqvae` (best) and `<run_dir>/last/vqvae` (resume)."""
    preset = get_preset(cfg.preset)
    if preset.patches is not None:  # a fitted codebook, not a trained VQ-VAE
        from training.patches import fit_patches

        patches = replace(preset.patches, n_codes=cfg.codes) if cfg.codes > 0 else preset.patches
        return fit_patches(cfg, patches, preset.name)
    device = resolve_device(cfg.device)
    run = Path(cfg.run_dir)
    eps = Episodes.concat([Episodes.load(p, mmap=True) for p in cfg.data])
    train_e, val_e = split_episodes(eps.n_episodes, cfg.val_fraction, cfg.split_seed)
    train_rows = frame_indices(eps, train_e)
    val_rows = frame_indices(eps, val_e if len(val_e) else train_e)
    n_val = min(cfg.val_frames, len(val_rows))
    pick = np.random.default_rng(cfg.split_seed).choice(len(val_rows), n_val, replace=False)
    val_x = torch.from_numpy(np.asarray(eps.frames[np.sort(val_rows[pick])]))

    if cfg.epochs > 0:
        cfg = replace(cfg, steps=max(1, int(cfg.epochs * len(train_rows) / cfg.batch_size)))
    torch.manual_seed(cfg.seed)
    vq_cfg = replace(preset.vq, n_embeddings=cfg.codes) if cfg.codes > 0 else preset.vq
    model = VQVAE(vq_cfg).to(device)
    model.quantizer.auto_reset = cfg.reseed == "random" and not cfg.decoder_only
    info: dict[str, Any] = {"data": [str(p) for p in cfg.data], "stage": "vqvae"}
    if cfg.decoder_only and not cfg.init:
        raise DatasetError("--decoder-only: needs --init, the VQ-VAE whose codes to keep")
    last_dir, best_dir = run / "last" / "vqvae", run / "vqvae"
    if cfg.init and Path(cfg.init).resolve() == best_dir.resolve():
        raise DatasetError(f"--init {cfg.init}: is this run's own best folder, which training overwrites; "
                           "copy it first")
    if cfg.resume and (last_dir / "config.json").exists():
        was = bool(read_info(last_dir).get("train_config", {}).get("decoder_only", False))
        if was != cfg.decoder_only:
            raise DatasetError(f"{last_dir}: --resume: that run was {'' if was else 'not '}--decoder-only; "
                               "resume it with the same flags")
    if cfg.init:
        load_weights(Path(cfg.init), model, "--init")
        info["init"] = str(cfg.init)
        if cfg.decoder_only:  # the tokens are the init's, and so are the token files and world models made of them
            info["tokens_of"] = tokens_root(read_info(cfg.init))
    frozen = [*model.encoder.parameters(), *model.quantizer.parameters()] if cfg.decoder_only else []
    for p in frozen:
        p.requires_grad_(False)
    loss_cfg = ReconLoss(cfg.recon, cfg.fg_weight, cfg.red_weight, cfg.worst_frac, cfg.worst_weight)
    opt = torch.optim.Adam(model.decoder.parameters() if cfg.decoder_only else model.parameters(), lr=cfg.lr)
    step, best = 0, None
    if cfg.resume:
        step, best, _ = load_resume(last_dir, model, opt)
    log = RunLogger(run, "vqvae")
    bar = progress(cfg.steps, step, "vqvae", cfg.progress_bar)
    t0, seen = time.time(), 0
    try:
        while step < cfg.steps:
            model.train()
            if cfg.decoder_only:  # no codebook EMA, no dead-code resets: the codes must not move
                model.encoder.eval()
                model.quantizer.eval()
            seed_step(cfg.seed, step)
            g = step_generator(cfg.seed, step)
            idx = torch.randint(0, len(train_rows), (cfg.batch_size,), generator=g).numpy()
            x = torch.from_numpy(np.asarray(eps.frames[np.sort(train_rows[idx])])).to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
            with autocast(device, cfg.amp):
                out = model(x)
                target = VQVAE.to_input(x)
                rec_loss, rec, se = recon_loss(out.recon, target, x, loss_cfg)
                loss = rec_loss + vq_cfg.commitment_beta * out.commitment_loss
            check_finite(loss, step, "vqvae", last_dir)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            q = model.quantizer
            if not cfg.decoder_only and not q.auto_reset and int(q.n_batches) % vq_cfg.dead_code_every == 0:
                flat = out.latents.detach().float().permute(0, 2, 3, 1)  # (B, h, w, D)
                flat = flat.reshape(-1, vq_cfg.latent_channels)  # (B*h*w, D), the quantizer's row order
                q.reset_dead_codes(flat, latent_error(se, out.latents.shape[-2:]))
            seen += x.shape[0]
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                q = model.quantizer
                scalars = {
                    "loss": loss.item(), "recon_mse": rec.item(), "psnr": psnr_from_mse(rec.item() / 4),  # on [-1, 1]
                    "perplexity": out.perplexity.item(), "codes_used": int((q.ema_count > 1e-3).sum()),
                    "dead_resets": int(q.n_resets), "frames_per_s": seen / (time.time() - t0),
                    "lr": opt.param_groups[0]["lr"],
                }
                log.scalars(step, scalars)
                bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{scalars['psnr']:.1f}",
                                ppl=f"{scalars['perplexity']:.1f}")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                metrics = evaluate_vq(model, val_x, device)
                log.scalars(step, {("val_" + k if k != "psnr" else "val_psnr"): v for k, v in metrics.items()
                                   if isinstance(v, (int, float))})
                score = metrics["vq_score"] if cfg.select == "objects" else metrics["psnr"]
                if best is None or score > best:
                    best = score
                    save_checkpoint(best_dir, model, preset.name, {**info, "step": step, "metrics": metrics})
                bar.write(f"vqvae step {step}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
            if step % cfg.image_every == 0:
                model.eval()
                with torch.no_grad():
                    rec_img = to_uint8_image(model(val_x[:8].to(device)).recon.cpu())
                log.image(step, "real_vs_recon", image_grid([val_x[:8], rec_img]))
            if step % cfg.save_every == 0 or step == cfg.steps:
                save_resume(last_dir, model, preset.name, opt, step, best, cfg, info)
    except KeyboardInterrupt:
        save_resume(last_dir, model, preset.name, opt, step, best, cfg, info)
        bar.close()
        print(f"\nvqvae: interrupted at step {step}; saved {last_dir} (continue with --resume)")
        raise
    finally:
        bar.close()
        log.close()
    if not (best_dir / "model.safetensors").exists():
        save_checkpoint(best_dir, model, preset.name, {**info, "step": step})
    return best_dir


@torch.no_grad()
def evaluate_vq(model: VQVAE, frames: torch.Tensor, device: torch.device, batch: int = 64) -> dict[str, Any]:
    """PSNR and the object figures of decode(encode(x)) against uint8 frames x, plus `vq_score` and gates."""
    model.eval()
    tally, se, n = ObjectTally(), 0.0, 0
    for i in range(0, len(frames), batch):
        x = frames[i : i + batch].to(device)
        rec = model.decode(model.encode(x)).float()
        t = VQVAE.to_input(x)
        se += ((rec - t) / 2).pow(2).sum().item()
        n += t.numel()
        tally.add(x.cpu().numpy(), to_uint8_image(rec.cpu()).numpy())
    mse = se / max(n, 1)
    out: dict[str, Any] = {"psnr": psnr_from_mse(float(mse)), **tally.summary()}
    out["vq_score"] = vq_score(out)
    out["gates_passed"] = sum(gates(out).values())
    return out
