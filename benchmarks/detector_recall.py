"""How often the detector reads the ball where a player sees it, region by region, against the emulator.

Real Breakout play (tracker and random policies, as the data mix), each frame's truth from the emulator itself
(`RealEnv.lone_ball`: the RAM's ball, where it stands alone on the full-resolution screen), read by the
detector of this checkout and, with `--detector-from`, by another version of `neuroplay/envs/breakout.py` on
the same frames (the tracker plays by this checkout's detector, so both read one game).

    python benchmarks/detector_recall.py --steps 17000 --detector-from /tmp/before/neuroplay/envs/breakout.py

Prints a Markdown table and writes `benchmarks/results/detector-recall.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuroplay.envs.breakout import detect  # noqa: E402
from neuroplay.envs.players import RandomPolicy, TrackerPolicy  # noqa: E402
from neuroplay.envs.real import RealEnv  # noqa: E402

PLAYERS = ((TrackerPolicy, 0.02, 6), (TrackerPolicy, 0.1, 3), (RandomPolicy, 4, 2), (TrackerPolicy, 0.0, 6))
"""(policy, noise or hold, share of the steps out of 17): steady trackers that break into the wall, a noisier
one and random play, as the data mix has them."""
REGIONS = {
    "open field": lambda x, y: (y >= 38) & (y < 75) & (x > 4) & (x < 59.5),
    "gap in the wall": lambda x, y: (y >= 22) & (y < 38),
    "paddle rows": lambda x, y: y >= 75,
    "left wall": lambda x, y: (x <= 4) & (y < 75),
    "right wall": lambda x, y: (x >= 59.5) & (y < 75),
}


def play(steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, 84, 64, 3), lone-ball truth (N, 2) and the RAM's ball (N, 2) of real play (NaN: none)."""
    frames, truth, ram = [], [], []
    total = sum(p[2] for p in PLAYERS)
    for k, (cls, arg, share) in enumerate(PLAYERS):
        env = RealEnv(seed=seed + k)
        pol = cls(arg, seed + k) if cls is TrackerPolicy else cls(seed + k, int(arg))
        frame = env.reset()
        for _ in range(steps * share // total):
            s = env.step(pol.act(frame))
            frame = s.frame
            frames.append(frame)
            ball = env.lone_ball()
            truth.append(ball if ball is not None else (np.nan, np.nan))
            ram.append(env.ram_ball() or (np.nan, np.nan))
            if s.done:
                frame = env.reset()
                pol.reset()
    return np.stack(frames), np.array(truth), np.array(ram)


def score(read: list, truth: np.ndarray, ram: np.ndarray) -> dict[str, object]:
    """Recall per region (read within 2 px of the truth), and readings that are not the emulator's ball."""
    r = np.array([(o.ball_x, o.ball_y) if o.ball_visible else (np.nan, np.nan) for o in read], float)
    seen = ~np.isnan(truth[:, 0])
    hit = seen & (np.hypot(*(r - truth).T) < 2)
    got = ~np.isnan(r[:, 0])
    off = got & (np.isnan(ram[:, 0]) | (np.hypot(*(r - ram).T) >= 3))
    out: dict[str, object] = {}
    for name, where in REGIONS.items():
        m = seen & where(truth[:, 0], truth[:, 1])
        out[name] = {"balls": int(m.sum()), "recall": float(hit[m].mean()) if m.any() else None}
    out["all"] = {"balls": int(seen.sum()), "recall": float(hit[seen].mean())}
    out["readings_off_the_ball"] = int(off.sum())
    out["two_balls"] = int(sum(o.n_balls > 1 for o in read))
    return out


def load_detector(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_breakout", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--detector-from: cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=17000, help="real frames to play and read")
    ap.add_argument("--seed", type=int, default=0, help="emulator and policy seed")
    ap.add_argument("--detector-from", default=None, help="another breakout.py to read the same frames with")
    ap.add_argument("--out", default="benchmarks/results/detector-recall.json", help="JSON results")
    args = ap.parse_args()
    frames, truth, ram = play(args.steps, args.seed)
    results = {"now": score([detect(f) for f in frames], truth, ram)}
    if args.detector_from:
        other = load_detector(args.detector_from)
        results["other"] = score([other.detect(f) for f in frames], truth, ram)
    print(f"{len(frames)} real frames, {results['now']['all']['balls']} with a ball standing alone\n")
    cols = list(results)
    print("| where the ball is | balls | " + " | ".join(f"recall ({c})" for c in cols) + " |")
    print("| --- | --: |" + " --: |" * len(cols))
    for name in [*REGIONS, "all"]:
        cells = [results[c][name]["recall"] for c in cols]  # type: ignore[index]
        txt = " | ".join("-" if v is None else f"{v:.3f}" for v in cells)
        print(f"| {name} | {results['now'][name]['balls']} | {txt} |")  # type: ignore[index]
    for key in ("readings_off_the_ball", "two_balls"):
        print(f"| {key.replace('_', ' ')} (frames) | - | " + " | ".join(str(results[c][key]) for c in cols) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"steps": len(frames), "seed": args.seed, **results}, indent=2))


if __name__ == "__main__":
    main()
