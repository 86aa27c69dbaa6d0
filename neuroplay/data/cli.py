"""`neuroplay collect` and `neuroplay data info | merge`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from neuroplay.cliutil import add_dataclass_args, build
from neuroplay.errors import UsageError


def add_collect_parser(sub: argparse._SubParsersAction) -> None:
    from neuroplay.data.collect import CollectConfig

    p = sub.add_parser("collect", help="collect Breakout episodes from ALE into a dataset file",
                       description=(CollectConfig.__doc__ or "").strip())
    add_dataclass_args(p, CollectConfig)


def run_collect(args: argparse.Namespace) -> int:
    from neuroplay.data.collect import CollectConfig, collect

    cfg = build(CollectConfig, args)
    t0 = time.perf_counter()
    eps = collect(cfg)
    dt = time.perf_counter() - t0
    print(f"saved {cfg.out}: {eps.n_episodes} episodes, {eps.n_transitions} transitions "
          f"in {dt:.1f} s ({eps.n_transitions / max(dt, 1e-9):.0f} frames/s)")
    return 0


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect and merge dataset files")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    info = dsub.add_parser("info", help="validate files and print a summary")
    info.add_argument("files", nargs="+", help="dataset files (.npz)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    merge = dsub.add_parser("merge", help="concatenate dataset files into one (atomic write)")
    merge.add_argument("files", nargs="+", help="input dataset files (.npz)")
    merge.add_argument("--out", required=True, help="output file (.npz)")
    merge.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused by default)")


def run_data(args: argparse.Namespace) -> int:
    from neuroplay.data.episodes import Episodes, refuse_existing

    if args.data_command == "info":
        for f in args.files:
            s = Episodes.load(f, mmap=True).summary()
            if args.json:
                print(json.dumps({"file": f, **s}))
                continue
            print(f"{f}: {s['kind']}, {s['episodes']} episodes, {s['transitions']} transitions, "
                  f"{s['frames']} frames ({s['frames'] * s['bytes_per_frame'] / 2**20:.1f} MiB as uint8)")
            el = s["episode_length"]
            print(f"  episode length min/median/max: {el['min']}/{el['median']:.0f}/{el['max']}; "
                  f"return mean {s['return']['mean']:.2f}, max {s['return']['max']:.0f}")
            print("  actions: " + ", ".join(f"{k} {v}" for k, v in s["actions"].items()))
            print("  sources: " + ", ".join(f"{k} {v['episodes']} ep / {v['transitions']} tr"
                                            for k, v in s["sources"].items()))
        return 0
    out = Path(args.out)
    if out.resolve() in {Path(f).resolve() for f in args.files}:
        raise UsageError(f"--out {out}: would overwrite one of its inputs; choose another name")
    refuse_existing(out, args.overwrite)
    merged = Episodes.concat([Episodes.load(f) for f in args.files])
    if len(args.files) == 1:
        merged = merged.replace(meta=dict(merged.meta))
    merged.save(out)
    print(f"saved {out}: {merged.n_episodes} episodes, {merged.n_transitions} transitions")
    return 0
