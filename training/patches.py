"""`neuroplay train vqvae` for a preset with a patch tokenizer (`local`): fit the codebook, nothing to train.

The codebook is chosen among the distinct 4x4 patches of the training split's frames (`greedy_codebook`), and
the checkpoint records what share of the val split's patches it holds exactly. One pass, a few minutes on one
core for 60k frames; `train all` then tokenizes and trains the world model as for a VQ-VAE.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuroplay.checkpoint import atomic_write_bytes, save_checkpoint
from neuroplay.config import PatchConfig
from neuroplay.data.datasets import frame_indices, split_episodes
from neuroplay.data.episodes import Episodes
from neuroplay.models.patches import PatchTokenizer, to_patches

if TYPE_CHECKING:
    from training.vqvae import VQTrainConfig


def exact_share(tok: PatchTokenizer, frames: np.ndarray, batch: int = 256) -> float:
    """Share of the 4x4 patches of `frames` (N, 84, 64, 3) that their code gives back exactly."""
    hit = total = 0
    for i in range(0, len(frames), batch):
        x = np.asarray(frames[i : i + batch])
        back = tok.decode_uint8(tok.encode(torch.from_numpy(x)))  # (b, 84, 64, 3)
        same = (to_patches(back) == to_patches(x)).all(-1)  # (b, 336)
        hit, total = hit + int(same.sum()), total + same.size
    return hit / max(total, 1)


def fit_patches(cfg: VQTrainConfig, patches: PatchConfig, preset: str) -> Path:
    """Fit the codebook of `patches` on the training split of `cfg.data`; save it to `<run_dir>/vqvae`."""
    run = Path(cfg.run_dir)
    eps = Episodes.concat([Episodes.load(p, mmap=True) for p in cfg.data])
    train_e, val_e = split_episodes(eps.n_episodes, cfg.val_fraction, cfg.split_seed)
    t0 = time.time()
    train_rows = frame_indices(eps, train_e)
    tok = PatchTokenizer.fit(np.asarray(eps.frames[train_rows]), patches)
    seconds = time.time() - t0
    val_rows = frame_indices(eps, val_e if len(val_e) else train_e)
    pick = np.sort(np.random.default_rng(cfg.split_seed).choice(len(val_rows), min(cfg.val_frames, len(val_rows)),
                                                                replace=False))
    metrics = {"val_exact_patches": exact_share(tok, np.asarray(eps.frames[val_rows[pick]]))}
    info = {"data": [str(p) for p in cfg.data], "stage": "patches", "fit_frames": int(len(train_rows)),
            "fit_seconds": round(seconds, 1), "metrics": metrics, "step": cfg.steps}
    out = save_checkpoint(run / "vqvae", tok, preset, info)
    last = run / "last" / "vqvae"
    last.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(last / "progress.json", json.dumps({"step": cfg.steps, "best": None}).encode())
    print(f"patches: {patches.n_codes} codes from {len(train_rows)} frames in {seconds:.0f} s; "
          f"val patches held exactly {metrics['val_exact_patches']:.4f} -> {out}")
    return out
