"""Evaluation throughput: gold-tier samples/s of `evaluate`, today's code against an older checkout.

Each side runs in its own process on the same checkpoint, data and threads, alternating over rounds so the
machine's drift hits both alike. The figure is the metric pass of `neuroplay eval --tier gold` (the probes are
timed by `neuroplay eval` itself, in its JSON's "seconds"):

- after (this checkout): every gold sample at h1 through the sequence pass, the tier's default share rolled out;
- before (`--before DIR`, e.g. a `git worktree` of an older commit): that code's gold tier, where every sample was
  rolled out to h10 with mirror and sensitivity. Its cost per sample does not depend on which samples, so it is
  timed on the first `--before-samples` of the tier.

    git worktree add /tmp/before <older commit>
    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --data data/heldout_mix_3k.npz --before /tmp/before

`--whole TIER` times the whole `neuroplay eval --tier TIER` instead (metrics, probes, endless dream), the same
command in both checkouts (so the older one must have today's tiers and flags), and lists every figure that
differs between the two: a faster evaluation must give the same numbers.

    git worktree add /tmp/before <older commit>
    OMP_NUM_THREADS=2 python benchmarks/eval_speed.py --data data/heldout_mix_3k.npz --before /tmp/before \
        --whole canary --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, torch
from neuroplay.checkpoint import load_pair
from neuroplay.evaluation.metrics import evaluate
from neuroplay.evaluation.suite import frozen_samples
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
if a.get("preset"):  # random weights of a preset with no trained checkpoint (speed only: figures meaningless)
    from neuroplay.config import get_preset
    from neuroplay.models.vqvae import VQVAE
    from neuroplay.models.world_model import TemporalWorldModel
    torch.manual_seed(0)
    p = get_preset(a["preset"])
    vq, wm = VQVAE(p.vq).eval(), TemporalWorldModel(p.wm).eval()
else:
    vq, wm, _ = load_pair(a["checkpoint"], torch.device("cpu"))
data, s = frozen_samples([a["data"]], "gold", "all", a["indices"])
if a["n"]:
    s = s[: a["n"]]
t0 = time.perf_counter()
m = evaluate(vq, wm, data, s, horizon=10, batch_size=a["batch"], rollout_samples=a["rollouts"])
dt = time.perf_counter() - t0
out = {"samples": len(s), "rolled_out": m["n_samples_rollout"], "seconds": dt, "samples_per_s": len(s) / dt,
       "val_loss": m["val_loss"], "psnr_h1": m["rollout_psnr_h1"]}
if a["split_costs"] and m["n_samples_rollout"] < len(s):  # a rolled-out sample's cost, and so an h1 sample's
    data.sources.clear()  # a cold source, as the timed pass had: no remembered codes or mirrors
    t0 = time.perf_counter()
    evaluate(vq, wm, data, s[:64], horizon=10, batch_size=a["batch"], rollout_samples=0)
    deep = (time.perf_counter() - t0) / 64
    h1 = (dt - deep * m["n_samples_rollout"]) / (len(s) - m["n_samples_rollout"])
    out.update(rollout_sample_s=deep, h1_sample_s=h1, rollout_work=deep / h1)
print(json.dumps(out))
"""


def run(code_dir: Path, args: argparse.Namespace, n: int, rollouts: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "OMP_NUM_THREADS": str(args.threads)}
    spec = {"checkpoint": str(Path(args.checkpoint).resolve()), "data": str(Path(args.data).resolve()),
            "indices": str(Path(args.indices).resolve()), "threads": args.threads, "n": n, "rollouts": rollouts,
            "split_costs": n == 0 and not args.preset, "preset": args.preset, "batch": args.batch_size}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, cwd=code_dir, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_whole(code_dir: Path, args: argparse.Namespace, out: Path) -> dict:
    """`neuroplay eval --tier args.whole` in `code_dir`'s code: its JSON's seconds and metrics."""
    env = {**os.environ, "PYTHONPATH": str(code_dir), "OMP_NUM_THREADS": str(args.threads),
           "SDL_VIDEODRIVER": "dummy"}
    cmd = [sys.executable, "-m", "neuroplay.cli", "eval", "--data", str(Path(args.data).resolve()), "--checkpoint",
           str(Path(args.checkpoint).resolve()), "--split", "all", "--tier", args.whole, "--indices",
           str(Path(args.indices).resolve()), "--json", str(out), "--no-progress-bar"]
    subprocess.run(cmd, env=env, cwd=code_dir, check=True, capture_output=True, text=True)
    g = json.loads(out.read_text())
    m = g["metrics"]
    return {"samples": m["n_samples"], "rolled_out": m["n_samples_rollout"], "seconds": g["seconds"],
            "samples_per_s": m["n_samples"] / g["seconds"]["total"], "metrics": m}


def flat(x: object, key: str = "") -> dict[str, object]:
    """Nested dicts and lists of figures -> {"objects.h1.ball_recall": ..., "per_horizon.acc.3": ...}."""
    if isinstance(x, dict):
        return {k2: v for k, sub in x.items() for k2, v in flat(sub, f"{key}.{k}" if key else str(k)).items()}
    if isinstance(x, list):
        return {k2: v for i, sub in enumerate(x) for k2, v in flat(sub, f"{key}.{i}").items()}
    return {key: x}


def differences(a: dict, b: dict, tol: float = 1e-6) -> list[str]:
    """Figures (nested ones too) of two metric dicts that differ: floats by more than tol, relative."""
    fa, fb = flat(a), flat(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        x, y = fa.get(k), fb.get(k)
        if isinstance(x, float) and isinstance(y, float):
            if abs(x - y) > tol * max(1.0, abs(x)):
                out.append(f"{k}: {x} vs {y}")
        elif x != y:
            out.append(f"{k}: {x} vs {y}")
    return out


def whole(args: argparse.Namespace, here: Path) -> None:
    rows: dict[str, list[dict]] = {"after": [], "before": []}
    tmp = Path(args.json or "/tmp/eval_speed.json").resolve().with_suffix("")  # the children run elsewhere
    for r in range(args.rounds):
        for side, code in (("after", here), ("before", Path(args.before).resolve())):
            rows[side].append(run_whole(code, args, Path(f"{tmp}_{side}{r}.json")))
            print(f"round {r}: {side} {rows[side][-1]['seconds']}")
    med = lambda side, k: sorted(x["seconds"][k] for x in rows[side])[len(rows[side]) // 2]  # noqa: E731
    summary = {"tier": args.whole, "threads": args.threads,
               **{f"{side}_{k}_s": med(side, k) for side in rows for k in ("metrics", "probes", "total")},
               "differences": differences(rows["after"][0]["metrics"], rows["before"][0]["metrics"])}
    summary["ratio_total"] = summary["before_total_s"] / summary["after_total_s"]
    summary["samples_per_s"] = {side: rows[side][0]["samples"] / med(side, "total") for side in rows}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "runs": [
            {side: {k: v for k, v in x.items() if k != "metrics"} for side in rows for x in rows[side]}]}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a held-out episode file (pixels), scored with --split all")
    ap.add_argument("--checkpoint", default="assets/checkpoints/lite", help="folder with vqvae/ and wm/")
    ap.add_argument("--indices", default="/tmp/eval_speed_indices.json", help="frozen tier file (made if absent)")
    ap.add_argument("--before", default="", help="an older checkout to compare with")
    ap.add_argument("--before-samples", type=int, default=200, help="gold samples the older code is timed on")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="write the figures here")
    ap.add_argument("--after-from", default="", help="take the after figure from this `neuroplay eval --tier gold "
                    "--json` file (its metric pass is the same call) instead of timing it again")
    ap.add_argument("--preset", default="", help="time this preset at random init instead of --checkpoint (e.g. spec, "
                    "which has no trained pair): the metric pass on the first --samples gold samples, a tenth rolled "
                    "out")
    ap.add_argument("--batch-size", type=int, default=16, help="evaluate's batch (neuroplay eval's CPU default)")
    ap.add_argument("--samples", type=int, default=200, help="with --preset: samples timed")
    ap.add_argument("--whole", default="", choices=["", "canary", "fastval", "gold"],
                    help="time the whole `neuroplay eval --tier` in both checkouts, and compare their figures")
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    if args.preset:
        from neuroplay.evaluation.suite import frozen_samples

        _, s = frozen_samples([args.data], "gold", "all", args.indices)
        n = min(args.samples, len(s))
        res = run(here, args, n, max(1, n // 10))
        print(json.dumps({"preset": args.preset, **res}))
        if args.json:
            Path(args.json).write_text(json.dumps({"preset": args.preset, **res}, indent=1))
        return
    if args.whole:
        if not args.before:
            ap.error("--whole needs --before")
        whole(args, here)
        return
    rows: dict[str, list[dict]] = {"after": [], "before": []}
    for r in range(args.rounds):
        from neuroplay.evaluation.suite import default_rollouts, frozen_samples

        _, s = frozen_samples([args.data], "gold", "all", args.indices)
        if args.after_from:
            g = json.loads(Path(args.after_from).read_text())
            n, dt = g["metrics"]["n_samples"], g["seconds"]["metrics"]
            rows["after"] = [{"samples": n, "rolled_out": g["metrics"]["n_samples_rollout"], "seconds": dt,
                              "samples_per_s": n / dt, "from": args.after_from}]
        else:
            rows["after"].append(run(here, args, 0, default_rollouts("gold", len(s))))
        print(f"round {r}: after  {rows['after'][-1]}")
        if args.before:
            rows["before"].append(run(Path(args.before).resolve(), args, args.before_samples, 0))
            print(f"round {r}: before {rows['before'][-1]}")
    med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None
    after = med([x["samples_per_s"] for x in rows["after"]])
    before = med([x["samples_per_s"] for x in rows["before"]])
    summary = {"after_samples_per_s": after, "before_samples_per_s": before,
               "ratio": after / before if after and before else None, "threads": args.threads, "runs": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
