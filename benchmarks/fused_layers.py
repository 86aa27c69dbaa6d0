"""lite vs lite2 (fused queries) at each `action_layer`, step-interleaved, plus their training steps.

Why interleaved: on a shared or throttling machine, timing one variant after the other compares the load
of two moments, not the models. Here every iteration steps each variant's engine once, back to back, so
drift hits all of them alike; the ratios of the medians are what to read. Random-init weights, batch 1.

    OMP_NUM_THREADS=1 python benchmarks/fused_layers.py --steps 30 --train-steps 4
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from neuroplay.config import WMConfig, get_preset
from neuroplay.engine import DreamEngine
from neuroplay.models.vqvae import VQVAE
from neuroplay.models.world_model import TemporalWorldModel


def variants() -> dict[str, WMConfig]:
    lite, lite2 = get_preset("lite").wm, get_preset("lite2").wm
    out = {"lite": lite}
    out.update({f"lite2_al{k}": replace(lite2, action_layer=k) for k in range(lite2.n_layers)})
    return out


def play_steps(cfgs: dict[str, WMConfig], steps: int, dtype: str) -> dict[str, dict[str, float]]:
    """Median ms of the engine's frame pass (`prepare`), query (`model`) and key-to-frame, per variant."""
    rng = np.random.default_rng(0)
    start = rng.integers(32, size=(4, 336))
    engines = {}
    for name, c in cfgs.items():
        torch.manual_seed(0)
        engines[name] = DreamEngine(VQVAE(get_preset("lite").vq).eval(), TemporalWorldModel(c).eval(), "cpu", dtype)
        engines[name].reset(tokens=start)
    t: dict[str, dict[str, list[float]]] = {k: {"prepare": [], "model": [], "key_to_frame": []} for k in engines}
    for i in range(steps + 3):  # 3 untimed steps first
        for name, e in engines.items():
            prep = e.prepare()
            s = e.step(int(rng.integers(4)))
            if i >= 3:
                t[name]["prepare"].append(prep)
                t[name]["model"].append(s.timings_ms["model"])
                t[name]["key_to_frame"].append(s.timings_ms["total"])
    return {name: {k: float(np.median(v)) for k, v in d.items()} for name, d in t.items()}


def train_steps(cfgs: dict[str, WMConfig], steps: int) -> dict[str, float]:
    """Median ms of one training step (lite's batch of clips, sequence loss, AdamW), alternated."""
    from training.importance import ImportanceConfig
    from training.wm import sequence_loss

    train = get_preset("lite").train
    b, n = int(train["batch_size"]), int(train["seq_frames"])
    frames, actions = torch.randint(32, (b, n, 336)), torch.randint(4, (b, n - 1))
    dist = 1 - torch.eye(32)
    models = {}
    for name, c in cfgs.items():
        torch.manual_seed(0)
        m = TemporalWorldModel(c).train()
        models[name] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4))
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(steps + 1):  # the first step is untimed
        for name, (m, opt) in models.items():
            t0 = time.perf_counter()
            loss, _ = sequence_loss(m, frames, actions, dist, ImportanceConfig(), 4)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: float(np.median(v)) for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed play steps per variant")
    ap.add_argument("--train-steps", type=int, default=4, help="timed training steps (lite and lite2 only)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    cfgs = variants()
    play = play_steps(cfgs, args.steps, args.dtype)
    base = play["lite"]
    base_work = base["prepare"] + base["key_to_frame"]
    for name, d in play.items():
        work = d["prepare"] + d["key_to_frame"]
        print(f"{name:10s} frame pass {d['prepare']:6.1f}  query {d['model']:6.1f}  key-to-frame "
              f"{d['key_to_frame']:6.1f}  work/frame {work:6.1f} ms  lite/this: key-to-frame "
              f"{base['key_to_frame'] / d['key_to_frame']:.2f}x, work {base_work / work:.2f}x")
    res: dict[str, object] = {"play_ms_p50": play, "threads": torch.get_num_threads(), "dtype": args.dtype}
    if args.train_steps > 0:
        tr = train_steps({k: cfgs[k] for k in ("lite", "lite2_al2")}, args.train_steps)
        print(f"training step: lite {tr['lite']:.0f} ms, lite2 {tr['lite2_al2']:.0f} ms: "
              f"lite2 {tr['lite'] / tr['lite2_al2']:.2f}x the samples/s")
        res["train_step_ms_p50"] = tr
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
