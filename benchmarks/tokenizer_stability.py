"""Is a tokenizer's grid stable where the game is? The representation stage of a low-compute dream, measured.

For the shipped VQ-VAE and for patch tokenizers (`neuroplay/models/patches.py`) of several codebook sizes, fitted
on one collection and read on held-out play, frame by frame:
- what a player sees after encode and decode: ball recall and false balls, paddle, bricks, score and lives (the
  evaluation's `ObjectTally`), PSNR over all frames and over each quarter of the file (not falling);
- token changes a step (within episodes) beside the exact 4x4 patch changes, the floor a local code can reach.

    neuroplay collect --frames 60000 --policy mix --envs 4 --seed 0 --out data/mix_60k.npz
    python benchmarks/tokenizer_stability.py --fit data/mix_60k.npz --data data/heldout_mix_3k.npz \\
        --codes 256 512 1024 --json benchmarks/results/tokenizer-stability.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroplay.checkpoint import load_checkpoint
from neuroplay.config import SHIPPED_CHECKPOINT
from neuroplay.data.episodes import Episodes
from neuroplay.evaluation.objects import ObjectTally
from neuroplay.models.patches import PatchConfig, PatchTokenizer, to_patches
from neuroplay.psnr import psnr_from_mse

Codec = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""uint8 frames (n, 84, 64, 3) -> (tokens (n, 336), decoded uint8 frames (n, 84, 64, 3))."""


def vq_codec(path: Path) -> Codec:
    vq = load_checkpoint(path, "vqvae", "cpu")[0].eval()

    @torch.inference_mode()
    def run(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tok = vq.encode(torch.from_numpy(frames))  # (n, 21, 16)
        return tok.flatten(1).numpy(), vq.decode_uint8(tok)

    return run


def patch_codec(tok: PatchTokenizer) -> Codec:
    def run(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = tok.encode(torch.from_numpy(frames))
        return t.flatten(1).numpy(), tok.decode_uint8(t)

    return run


def measure(codec: Codec, eps: Episodes, batch: int = 256) -> dict[str, Any]:
    frames = eps.frames
    n = len(frames)
    tally, se = ObjectTally(), np.zeros(n)
    tokens = np.empty((n, 336), np.int64)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        f = np.asarray(frames[i : i + batch])
        tok, dec = codec(f)
        tokens[i : i + batch] = tok
        tally.add(f, dec)
        err = (f.astype(np.float64) - dec.astype(np.float64)) / 255
        se[i : i + batch] = (err**2).reshape(len(f), -1).mean(1)
    seconds = time.perf_counter() - t0
    same_ep = np.ones(n - 1, bool)
    same_ep[np.cumsum(eps.episode_lengths + 1)[:-1] - 1] = False  # no step from an episode's last frame to the next
    tok_changes = (tokens[1:] != tokens[:-1]).sum(1)[same_ep]
    patches = to_patches(np.asarray(frames)).reshape(n, 336, -1)
    patch_changes = (patches[1:] != patches[:-1]).any(-1).sum(1)[same_ep]
    quarters = [psnr_from_mse(float(q.mean())) for q in np.array_split(se, 4)]
    return {**tally.summary(), "psnr": psnr_from_mse(float(se.mean())), "psnr_by_quarter": quarters,
            "token_changes_per_step": float(tok_changes.mean()),
            "token_changes_p99": float(np.percentile(tok_changes, 99)),
            "patch_changes_per_step": float(patch_changes.mean()),
            "changes_over_patch_changes": float(tok_changes.mean() / patch_changes.mean()),
            "ms_per_frame": seconds * 1e3 / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", required=True, help="episode file the patch codebooks are fitted on")
    ap.add_argument("--data", required=True, help="held-out episode file the figures are read on")
    ap.add_argument("--codes", type=int, nargs="+", default=[256, 512, 1024], help="codebook sizes to try")
    ap.add_argument("--fit-frames", type=int, default=60000, help="frames of --fit used to fit")
    ap.add_argument("--vq-checkpoint", default=str(SHIPPED_CHECKPOINT / "vqvae"), help="VQ-VAE to compare with")
    ap.add_argument("--save", default="", help="folder to save the patch tokenizers in (codes_K.safetensors)")
    ap.add_argument("--json", default="", help="write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    held = Episodes.load(a.data)
    fit = Episodes.load(a.fit, mmap=True)
    out: dict[str, Any] = {"data": a.data, "fit": a.fit, "results": {}}
    out["results"]["vqvae"] = measure(vq_codec(Path(a.vq_checkpoint)), held)
    print("vqvae", json.dumps(out["results"]["vqvae"]))
    frames = np.asarray(fit.frames[: a.fit_frames])
    for k in a.codes:
        t0 = time.perf_counter()
        tok = PatchTokenizer.fit(frames, PatchConfig(n_codes=k))
        fit_s = time.perf_counter() - t0
        if a.save:
            from safetensors.torch import save_file

            Path(a.save).mkdir(parents=True, exist_ok=True)
            save_file({"codebook": tok.codebook}, str(Path(a.save) / f"codes_{k}.safetensors"))
        r = {**measure(patch_codec(tok), held), "fit_seconds": fit_s}
        out["results"][f"patches_{k}"] = r
        print(f"patches_{k}", json.dumps(r))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
