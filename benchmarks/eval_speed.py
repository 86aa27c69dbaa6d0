"""Evaluation throughput (issue 16): samples/s of `evaluate` per preset and per part of the work.

Random-init world models time the same as trained ones. The parts are timed separately, so the floor of
each is visible: `h1` (the 4-frame history pass + one step, per sample), `rollout` (h1..h10 open loop on every
sample, as the gold tier does), `full` (the gold tier's whole `evaluate`: rollouts, LEFT/RIGHT sensitivity,
mirror, decoded PSNR and objects). Presets alternate within each round, so the machine's drift hits all alike.

    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --data data/heldout_mix_3k.npz --samples 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from neuroplay.checkpoint import load_pair
from neuroplay.config import get_preset
from neuroplay.evaluation.dreamer import rollout
from neuroplay.evaluation.metrics import EvalData, FrameSource, evaluate
from neuroplay.evaluation.suite import load_data, samples_for
from neuroplay.models.world_model import TemporalWorldModel


def flops_per_pass(preset: str) -> float:
    """Multiply-adds x 2 of one 336-token frame pass over a full 4-frame window (attention + linears)."""
    c = get_preset(preset).wm
    n, keys = c.n_tokens, c.n_tokens * c.max_history
    linear = n * (4 * c.d_model**2 + 2 * c.d_model * c.d_ff) * 2
    attn = 2 * n * keys * c.d_model * 2
    return c.n_layers * (linear + attn)


@torch.inference_mode()
def time_parts(vq: object, wm: object, data: EvalData, s: np.ndarray, batch: int) -> dict[str, float]:
    """Seconds for the h1 pass, the h10 rollout and the full gold `evaluate` on samples `s`."""
    src = FrameSource(data, vq, torch.device("cpu"))
    out = {}
    for name, horizon in (("h1", 1), ("rollout", 10)):
        t0 = time.perf_counter()
        for i in range(0, len(s), batch):
            b = s[i : i + batch]
            d = src.dreamer(wm, b)
            acts = torch.from_numpy(data.actions[(data.transition_offsets[b[:, 0]] + b[:, 1])[:, None]
                                                 + np.arange(horizon)]).long()
            rollout(d, acts)
        out[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(vq, wm, data, s, horizon=10, batch_size=batch, rollout_samples=0)
    out["full"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="an episode file (pixels)")
    ap.add_argument("--checkpoint", default="assets/checkpoints/next", help="its vqvae/ encodes the frames")
    ap.add_argument("--presets", default="lite,lite2")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    vq = load_pair(args.checkpoint, "cpu")[0]
    data = load_data([args.data])
    s = samples_for(data, "all", n=0)
    s = s[(s[:, 1] >= 3) & (s[:, 1] + 10 <= data.episode_lengths[s[:, 0]])][: args.samples]
    models = {}
    for p in args.presets.split(","):
        torch.manual_seed(0)
        models[p] = TemporalWorldModel(get_preset(p).wm).eval()
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in models}
    for _ in range(args.rounds):
        for p, wm in models.items():
            runs[p].append(time_parts(vq, wm, data, s, args.batch))
    result = {"samples": len(s), "batch": args.batch, "threads": torch.get_num_threads(), "presets": {}}
    for p, r in runs.items():
        med = {k: float(np.median([x[k] for x in r])) for k in r[0]}
        result["presets"][p] = {**{f"{k}_s": round(v, 2) for k, v in med.items()},
                                **{f"{k}_samples_per_s": round(len(s) / v, 2) for k, v in med.items()},
                                "gflop_per_pass": round(flops_per_pass(p) / 1e9, 2)}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
