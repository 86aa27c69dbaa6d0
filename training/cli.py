"""`neuroplay train vqvae | tokenize | wm | all | continue`: argument parsing and the `all` pipeline.

Also runnable as `python -m training.cli ...` (what the game's menu launches, and `torchrun` too).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from neuroplay.cliutil import add_dataclass_args, build
from neuroplay.config import PRESETS, SHIPPED_PRESET, TOKENS_FILE, get_preset


@dataclass
class AllConfig:
    """Flags of `neuroplay train all`: VQ-VAE, then tokens, then world model, in one run folder."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz) to train on."""
    preset: str = field(default=SHIPPED_PRESET, metadata={"choices": PRESETS})
    """Model preset (`neuroplay/config.py`); the default is the shipped model's."""
    run_dir: str = "runs/default"
    """Run folder: checkpoints, logs, TensorBoard."""
    vq_steps: int = 6000
    """VQ-VAE optimizer steps."""
    wm_steps: int = 20000
    """World-model optimizer steps."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 where fast), bf16 or off."""
    seed: int = 0
    """Seed of everything."""
    resume: bool = False
    """Skip finished stages and resume the unfinished one."""
    progress_bar: bool = True
    """Show progress bars."""


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    from training.finetune import ContinueConfig
    from training.tokenize import TokenizeConfig
    from training.vqvae import VQTrainConfig
    from training.wm import WMTrainConfig

    p = sub.add_parser("train", help="train the VQ-VAE, tokenize, train the world model")
    stages = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, cls, help_ in [
        ("vqvae", VQTrainConfig, "train the VQ-VAE on frames"),
        ("tokenize", TokenizeConfig, "encode all frames to a uint8 token file"),
        ("wm", WMTrainConfig, "train the world model on token files"),
        ("all", AllConfig, "vqvae, tokenize and wm in order"),
        ("continue", ContinueConfig, "continue a trained pair (the shipped one by default) on your episodes"),
    ]:
        sp = stages.add_parser(name, help=help_, description=(cls.__doc__ or "").strip())
        add_dataclass_args(sp, cls)


def _defaults(args: argparse.Namespace) -> dict:
    preset = getattr(args, "preset", None) or SHIPPED_PRESET
    return dict(get_preset(preset).train)


def run_train(args: argparse.Namespace) -> int:
    from training.finetune import ContinueConfig, run_continue
    from training.tokenize import TokenizeConfig, tokenize
    from training.vqvae import VQTrainConfig, train_vqvae
    from training.wm import WMTrainConfig, train_wm

    if args.stage == "vqvae":
        train_vqvae(build(VQTrainConfig, args))
    elif args.stage == "tokenize":
        tokenize(build(TokenizeConfig, args))
    elif args.stage == "wm":
        train_wm(build(WMTrainConfig, args, _defaults(args)))
    elif args.stage == "continue":
        run_continue(build(ContinueConfig, args))
    else:
        run_all(build(AllConfig, args))
    return 0


def run_all(cfg: AllConfig) -> None:
    """The three stages in one run folder; with --resume, finished stages are skipped."""
    from training.tokenize import TokenizeConfig, tokenize
    from training.vqvae import VQTrainConfig, train_vqvae
    from training.wm import WMTrainConfig, train_wm

    run = Path(cfg.run_dir)
    common = dict(preset=cfg.preset, run_dir=cfg.run_dir, device=cfg.device, amp=cfg.amp, seed=cfg.seed,
                  progress_bar=cfg.progress_bar)
    vq_done = _finished(run / "last" / "vqvae", cfg.vq_steps)
    if not vq_done:
        resume = cfg.resume and (run / "last" / "vqvae" / "train_state.pt").exists()
        train_vqvae(VQTrainConfig(data=cfg.data, steps=cfg.vq_steps, resume=resume, **common))
    tokens = run / TOKENS_FILE
    if not (cfg.resume and vq_done and tokens.exists()):
        tokenize(TokenizeConfig(data=cfg.data, run_dir=cfg.run_dir, device=cfg.device))
    resume = cfg.resume and (run / "last" / "wm" / "train_state.pt").exists()
    wm_defaults = dict(get_preset(cfg.preset).train)
    train_wm(WMTrainConfig(data=[str(tokens)], steps=cfg.wm_steps, resume=resume, **common, **wm_defaults))


def _finished(stage_dir: Path, steps: int) -> bool:
    import json

    try:
        return json.loads((stage_dir / "progress.json").read_text())["step"] >= steps
    except (OSError, ValueError, KeyError):
        return False


def main(argv: list[str] | None = None) -> int:
    from neuroplay.cli import main as np_main

    return np_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
