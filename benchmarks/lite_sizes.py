"""Speed of the `lite` world-model size candidates (d 128-192, 4-6 layers) in the play loop.

Each candidate is the `lite` config with another width (head size 32, FF 4d) and depth, random-init,
bf16 where fast, driven through `DreamEngine` exactly as the game drives it: the frame pass (before
the key), then the keyed step (query, argmax, VQ decode). Candidates are interleaved round by round, so
a drift in the machine's load hits them all alike; compare the ratios to d128 L4.

    python benchmarks/lite_sizes.py --rounds 5 --steps 20 --json benchmarks/results/lite-sizes.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neuroplay.bench import loop_samples
from neuroplay.bench_report import machine_info, stats
from neuroplay.config import get_preset
from neuroplay.engine import DreamEngine
from neuroplay.models.vqvae import VQVAE
from neuroplay.models.world_model import TemporalWorldModel

CANDIDATES = [(128, 4), (160, 4), (192, 4), (128, 6), (192, 6)]
"""(d_model, n_layers) pairs of the candidate sizes."""


def engine_for(d: int, layers: int, seed: int) -> DreamEngine:
    lite = get_preset("lite")
    cfg = replace(lite.wm, d_model=d, n_heads=d // 32, d_ff=4 * d, n_layers=layers)
    torch.manual_seed(seed)
    return DreamEngine(VQVAE(lite.vq).eval(), TemporalWorldModel(cfg).eval(), device="cpu")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all candidates")
    p.add_argument("--steps", type=int, default=20, help="timed steps per candidate per round")
    p.add_argument("--json", default="", help="write the figures here")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    engines = {(d, n): engine_for(d, n, 0) for d, n in CANDIDATES}
    times: dict[tuple[int, int], tuple[list[float], list[float]]] = {k: ([], []) for k in engines}
    for e in engines.values():
        e.reset(tokens=rng.integers(e.wm.cfg.n_vocab, size=(e.window, e.wm.cfg.n_tokens)))
    for _ in range(args.rounds):
        for k, e in engines.items():
            raw = loop_samples(e, args.steps, 3, rng)
            times[k][0].extend(raw["prepare"])
            times[k][1].extend(raw["key_to_frame"])
    base = stats(list(np.add(*times[CANDIDATES[0]])))["p50"]
    rows = []
    machine = machine_info(torch.device("cpu"))
    print(f"machine: {machine}")
    print("| d | layers | params | frame pass p50 | key-to-frame p50 / p95 | work per frame p50 | vs d128 L4 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (d, n), (prep, key) in times.items():
        fp, kf, work = stats(prep), stats(key), stats(list(np.add(prep, key)))
        params = sum(q.numel() for q in engines[(d, n)].wm.parameters())
        row = {"d": d, "layers": n, "params": params, "frame_pass_p50": fp["p50"], "key_to_frame_p50": kf["p50"],
               "key_to_frame_p95": kf["p95"], "work_p50": work["p50"], "ratio": work["p50"] / base}
        rows.append(row)
        print(f"| {d} | {n} | {params / 1e6:.2f}M | {row['frame_pass_p50']:.1f} | {row['key_to_frame_p50']:.1f} / "
              f"{row['key_to_frame_p95']:.1f} | {row['work_p50']:.1f} | {row['ratio']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
