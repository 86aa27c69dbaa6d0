"""The dream played by several kinds of player for a long time, beside the real game under the same player.

Each player of `neuroplay.envs.players.PLAYERS` plays `--steps` steps at each seed, a finished game starting a
new one, in the shipped dream and in ALE. Reported per player (worst seed, or the sum where it counts):
the longest run of FIRE presses with no ball in play, the steps from the last ball seen to each game over,
game overs and stalls, score drops, two-ball frames, and the serves the dream owed and took from its own most
likely ones (`neuroplay/envs/flow.py`).

    python benchmarks/soak_players.py --steps 5000 --seeds 0 1 2

Writes `benchmarks/results/soak-players.json` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORST = {"fire_unserved_max": max, "last_ball_to_end_max": max}
"""Figures reported as the worst seed; the rest are summed over seeds."""
COLUMNS = ("fire_unserved_max", "last_ball_to_end_max", "game_overs", "stalls", "score_drops", "two_balls",
           "brick_rises", "served_by_flow", "score_held")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="", help="run folder or preset (default: the shipped pair)")
    ap.add_argument("--steps", type=int, default=5000, help="steps per player and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--players", nargs="+", default=None, help="names from PLAYERS (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default="benchmarks/results/soak-players.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from neuroplay.app.catalog import resolve_checkpoint
    from neuroplay.engine import DreamEngine
    from neuroplay.envs.dream import DreamEnv
    from neuroplay.envs.players import PLAYERS
    from neuroplay.envs.real import RealEnv
    from neuroplay.evaluation.endless import soak

    torch.set_num_threads(args.threads)
    players = tuple(args.players or PLAYERS)
    unknown = [p for p in players if p not in PLAYERS]
    if unknown:
        raise SystemExit(f"--players: unknown {', '.join(unknown)} (choose from {', '.join(PLAYERS)})")
    engine = DreamEngine.from_checkpoint(resolve_checkpoint(args.checkpoint), device="cpu")
    t0 = time.perf_counter()
    runs = soak(lambda s: DreamEnv(engine, seed=s), lambda s: RealEnv(seed=s), args.steps, tuple(args.seeds),
                players)
    table: dict[str, dict[str, Any]] = {}
    for key, fig in runs.items():
        name, _, side = key.split("/")
        row = table.setdefault(f"{name}/{side}", {})
        for c in COLUMNS:
            row[c] = WORST.get(c, sum)([row[c], fig[c]]) if c in row else fig[c]
    out = {"steps": args.steps, "seeds": args.seeds, "seconds": round(time.perf_counter() - t0, 1),
           "dtype": str(engine.dtype), "runs": runs, "table": table}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp-json")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    print("| player | side | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "--:|" * len(COLUMNS))
    for key, row in table.items():
        name, side = key.split("/")
        print(f"| {name} | {side} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
