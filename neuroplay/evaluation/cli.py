"""`neuroplay eval` and `neuroplay analyze vqvae | actions`: argument parsing and printing only."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from neuroplay.cliutil import add_dataclass_args, build


@dataclass
class AnalyzeConfig:
    """Flags of `neuroplay analyze`: inspect a checkpoint's codebook or its action conditioning."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz), pixel files or their token files."""
    checkpoint: str = "assets/checkpoints/lite"
    """Folder holding `vqvae/` and `wm/` (vqvae also accepts a VQ-VAE checkpoint folder)."""
    split: Literal["val", "all"] = "val"
    """val: the val episodes of training's seeded split; all: every episode."""
    frames: int = 2048
    """vqvae: frames to analyze (seeded random)."""
    worst: int = 8
    """vqvae: worst-reconstructed frames to show."""
    states: int = 6
    """actions, dream: game states to show."""
    out: str = "analysis"
    """Folder for the PNGs (a subfolder per analysis)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    batch_size: int = 64
    """Frames per batch."""
    val_fraction: float = 0.1
    """Share of val episodes in training's split."""
    seed: int = 0
    """Seed of the split and of the picks."""


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    from neuroplay.evaluation.suite import EvalConfig

    p = sub.add_parser("eval", help="score a checkpoint on frozen val samples beside copy-last baselines",
                       description=(EvalConfig.__doc__ or "").strip())
    add_dataclass_args(p, EvalConfig)


def run_eval(args: argparse.Namespace) -> int:
    from neuroplay.evaluation.suite import EvalConfig, run_suite, summary_text

    cfg = build(EvalConfig, args)
    result = run_suite(cfg)
    print(summary_text(result))
    if result["indices"]["written"]:
        print(f"froze eval indices for the {cfg.split} split in {result['indices']['path']}")
    for what, path in (("json", cfg.json), ("report", result.get("report"))):
        if path:
            print(f"{what}: {path}")
    return 0


def add_analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="codebook usage and reconstructions, or the effect of each action",
                       description=(AnalyzeConfig.__doc__ or "").strip())
    p.add_argument("what", choices=["vqvae", "actions", "dream"], help="vqvae: codebook and reconstructions; "
                   "actions: the 4 predicted next frames from the same history; dream: real / reconstruction / "
                   "1-step dream on states with the ball")
    add_dataclass_args(p, AnalyzeConfig)


def run_analyze(args: argparse.Namespace) -> int:
    import json

    from neuroplay.checkpoint import load_checkpoint, load_pair, read_info
    from neuroplay.device import resolve_device
    from neuroplay.evaluation.analyze import (
        actions_table,
        analyze_actions,
        analyze_dream,
        analyze_vqvae,
        dream_table,
        vqvae_table,
    )
    from neuroplay.evaluation.suite import load_data, samples_for

    cfg = build(AnalyzeConfig, args)
    device = resolve_device(cfg.device)
    data = load_data(cfg.data)
    out = Path(cfg.out) / args.what
    ck = Path(cfg.checkpoint)
    if args.what == "vqvae":
        vq_dir = ck if (ck / "config.json").is_file() and read_info(ck)["kind"] == "vqvae" else ck / "vqvae"
        vq = load_checkpoint(vq_dir, "vqvae", device)[0]
        s = samples_for(data, cfg.split, cfg.val_fraction, cfg.seed, cfg.frames)
        r = analyze_vqvae(vq, data, s, out, cfg.worst, cfg.batch_size, device)
        print(vqvae_table(r))
    elif args.what == "dream":
        vq, wm, _ = load_pair(ck, device)
        r = analyze_dream(vq, wm, data, samples_for(data, cfg.split, cfg.val_fraction, cfg.seed), out, cfg.states,
                          device)
        print(dream_table(r))
    else:
        vq, wm, _ = load_pair(ck, device)
        s = samples_for(data, cfg.split, cfg.val_fraction, cfg.seed, cfg.states)
        r = analyze_actions(vq, wm, data, s, out, device)
        print(actions_table(r))
    (out / f"{args.what}.json").write_text(json.dumps(r, indent=2) + "\n")
    print("wrote " + ", ".join(r["files"]) + f", {out / (args.what + '.json')}")
    return 0
