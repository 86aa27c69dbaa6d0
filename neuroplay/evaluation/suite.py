"""`neuroplay eval` as a function: load a checkpoint pair and data, freeze or read the indices, score a tier.

Every tier scores all of its samples at h1: in one sequence pass over runs of consecutive samples, each with
the context play's cache would hold (`evaluation.dreamer.h1_logits`), so that a gold sample costs about one frame
pass. Rollouts to h10, mirror consistency and LEFT/RIGHT sensitivity cost ~35 frame passes a sample, so they run
on a random subset (the tiers are in random order): the canary's first `CANARY_ROLLOUTS`, fastval's and gold's
first `ROLLOUT_SHARE` (at least `CANARY_ROLLOUTS`). The canary runs small probes; fastval and gold the probe
sizes. Flags override all of it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from neuroplay import __version__
from neuroplay.checkpoint import load_pair
from neuroplay.config import ARGMAX, DecodeConfig, DecodeMode
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.device import resolve_device
from neuroplay.errors import UsageError
from neuroplay.evaluation.frames import EvalData
from neuroplay.evaluation.gameplay import gameplay_probes
from neuroplay.evaluation.indices import INDICES_FILE, load_or_create
from neuroplay.evaluation.metrics import eval_work, evaluate
from neuroplay.evaluation.playscore import play_score
from neuroplay.evaluation.probes import run_probes
from neuroplay.evaluation.report import beats_copy_last, rollout_examples, table, write_json, write_report

CANARY_ROLLOUTS = 100
ROLLOUT_SHARE = 0.1
"""fastval and gold roll out this share of their samples (3,000 samples: 300 rollouts, ~4% error at h10)."""
ENDLESS_STEPS = {"canary": 300, "fastval": 2000, "gold": 2000}
"""Per tier: autopilot steps of the endless-dream probe (the endless gates are over 2,000)."""
GAMEPLAY_STATES = {"canary": 12, "fastval": 100, "gold": 100}
"""Per tier: states of each gameplay probe (`evaluation.gameplay`)."""
PROBES: dict[str, tuple[int, int, int]] = {"canary": (20, 10, 10), "fastval": (200, 100, 100), "gold": (200, 100, 100)}
"""Per tier: (action-response states, FIRE states, ball-alive states)."""


@dataclass
class EvalConfig:
    """Flags of `neuroplay eval`: score a world model on frozen val samples, beside the copy-last baseline."""

    data: list[str] = field(default_factory=list)
    """Episode files (.npz): pixel files (encoded with the checkpoint's VQ-VAE) or its token files."""
    checkpoint: str = "assets/checkpoints/lite"
    """Folder holding `vqvae/` and `wm/` (a training run or a shipped checkpoint)."""
    split: Literal["val", "all"] = "val"
    """val: the val episodes of training's seeded split; all: every episode (held-out data)."""
    tier: Literal["canary", "fastval", "gold"] = "canary"
    """canary: 500 samples; fastval: 6000 balanced over actions; gold: all samples."""
    indices: str = ""
    """Frozen indices file (default: gold_eval_indices.json next to the first data file)."""
    json: str = ""
    """Write every figure, with checkpoint and data hashes, to this JSON file."""
    report: str = ""
    """Write a Markdown report with plots, a real-vs-dream strip (PNG) and a GIF into this folder."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: Literal["fp32", "bf16"] = "fp32"
    """World-model precision (bf16 is what `play` uses on CPUs with fast bf16; figures may differ slightly)."""
    limit: int = 0
    """Score only the first N samples of the tier, a frozen random subset (0: all)."""
    batch_size: int = 0
    """Samples (dreams) per batch; 0: 16 on a CPU (a batch's activations stay in cache: 18% faster dream steps
    than 32 on 2 AVX2 cores), 64 on a GPU. The figures do not depend on it (argmax; a sampling decoder's draws do)."""
    horizon: int = 10
    """Longest open-loop rollout."""
    rollout_samples: int = -1
    """Rollouts, mirror and action sensitivity on the first N samples only (-1: canary 100, else a tenth and at
    least 100; 0: all)."""
    response_states: int = -1
    """Action-response probe states (-1: tier default, canary 20, else 200; 0: skip)."""
    fire_states: int = -1
    """FIRE-launch probe states (-1: tier default, canary 10, else 100; 0: skip)."""
    ball_states: int = -1
    """Ball-alive probe states (-1: tier default, canary 10, else 100; 0: skip)."""
    gameplay_states: int = -1
    """States of each issue-15 gameplay probe: flight, bounce, brick hit, lost ball (-1: canary 12, else 100;
    0: skip, the reset-screen launch included)."""
    endless_steps: int = -1
    """Endless-dream probe: autopilot steps from the reset screen, beside the real game (-1: canary 300, else
    2000; 0: skip)."""
    examples: int = 3
    """Rollouts shown in the report's strip and GIF."""
    decode: DecodeMode = DecodeConfig.mode
    """Play's token decoder, for the probes and the "play decoder" rows (token figures are always argmax)."""
    temperature: float = DecodeConfig.temperature
    """Softmax temperature of the sample and coupled decoders."""
    confident: float = DecodeConfig.confident
    """coupled: a token whose top probability is at least this takes its argmax."""
    val_fraction: float = 0.1
    """Share of val episodes in training's split (must match training)."""
    seed: int = 0
    """Seed of training's split and of the tier picks (must match training's --split-seed)."""
    progress_bar: bool = True
    """Show a progress bar."""


def load_data(paths: list[str]) -> EvalData:
    """Validate and memory-map the files as one dataset."""
    if not paths:
        raise DatasetError("--data: give at least one episode file")
    return EvalData([Episodes.load(p, mmap=True) for p in paths])


def default_indices_path(cfg: EvalConfig) -> Path:
    return Path(cfg.indices) if cfg.indices else Path(cfg.data[0]).parent / INDICES_FILE


def frozen_samples(paths: list[str], tier: str = "canary", split: str = "val", indices: str | Path = "",
                   val_fraction: float = 0.1, seed: int = 0) -> tuple[EvalData, np.ndarray]:
    """The data and a tier's frozen (episode, t) samples, exactly as `neuroplay eval` scores them.

    For training's periodic checks: `evaluate(vq, wm, *frozen_samples(files, "canary"))`.
    """
    data = load_data(paths)
    ipath = Path(indices) if indices else Path(paths[0]).parent / INDICES_FILE
    idx, _ = load_or_create(ipath, paths, data.metas, data.episode_lengths, data.actions_at, split, val_fraction, seed)
    return data, idx.samples(split, tier)


def run_suite(cfg: EvalConfig) -> dict[str, Any]:
    """Everything `neuroplay eval` computes, as the JSON-able dict it writes; also writes --json/--report."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    if cfg.horizon < 1 or cfg.batch_size < 0:
        raise UsageError("--horizon must be >= 1 and --batch-size >= 0")
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or (16 if device.type == "cpu" else 64))
    decode = DecodeConfig(cfg.decode, cfg.temperature, cfg.confident)
    vq, wm, info = load_pair(cfg.checkpoint, device)
    if cfg.dtype == "bf16":
        wm = wm.to(torch.bfloat16)
    data = load_data(cfg.data)
    data.check_tokens_of(cfg.data, info["vqvae"], Path(cfg.checkpoint) / "vqvae")
    ipath = default_indices_path(cfg)
    idx, written = load_or_create(ipath, cfg.data, data.metas, data.episode_lengths, data.actions_at, cfg.split,
                                  cfg.val_fraction, cfg.seed)
    samples = idx.samples(cfg.split, cfg.tier)
    samples = samples[: cfg.limit] if cfg.limit > 0 else samples
    n_roll = cfg.rollout_samples if cfg.rollout_samples >= 0 else default_rollouts(cfg.tier, len(samples))
    t1 = time.perf_counter()
    n_end = cfg.endless_steps if cfg.endless_steps >= 0 else ENDLESS_STEPS[cfg.tier]
    n_game = cfg.gameplay_states if cfg.gameplay_states >= 0 else GAMEPLAY_STATES[cfg.tier]
    sizes = [c if c >= 0 else d for c, d in zip((cfg.response_states, cfg.fire_states, cfg.ball_states),
                                                PROBES[cfg.tier])]
    if cfg.progress_bar:  # the plan up front; the bar below gives the ETA once the first batch is scored
        print(f"eval {cfg.tier}: {len(samples)} samples at h1, {min(n_roll or len(samples), len(samples))} rolled "
              f"out to h{cfg.horizon}; probes on {sizes[0]}/{sizes[1]}/{sizes[2]} states (response/FIRE/ball), "
              f"gameplay probes on {n_game}; "
              f"endless dream {n_end} steps; decoder {decode.label()}", file=sys.stderr)
    work = eval_work(wm, samples, min(n_roll or len(samples), len(samples)), cfg.batch_size)
    bar = tqdm(total=work, desc=f"eval {cfg.tier}",
               disable=not cfg.progress_bar, file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining}")  # frame passes, not samples: % and ETA
    try:
        metrics = evaluate(vq, wm, data, samples, horizon=cfg.horizon, batch_size=cfg.batch_size,
                           rollout_samples=n_roll, device=device, progress=bar.update, decode=decode, seed=cfg.seed)
    finally:
        bar.close()
    t2 = time.perf_counter()
    for dec in (decode, ARGMAX) if decode != ARGMAX else (decode,):
        probes = run_probes(vq, wm, data, samples, response_states=sizes[0], fire_states=sizes[1],
                            ball_states=sizes[2], seed=cfg.seed, batch_size=cfg.batch_size, device=device, decode=dec,
                            real_game=dec is decode)
        tag = "_argmax" if dec is not decode else ""
        metrics.update({k + tag: v for k, v in probes.items()})
    t_behaviour = time.perf_counter()
    metrics.update(gameplay_probes(vq, wm, data, samples, states=n_game, seed=cfg.seed, batch_size=cfg.batch_size,
                                   device=device, decode=decode))
    metrics["play_score"] = play_score(metrics)
    t_gameplay = time.perf_counter()
    if n_end > 0:
        metrics.update(endless_probe(vq, wm, device, decode, n_end, cfg))
    t3 = time.perf_counter()
    parts = {"behaviour": t_behaviour - t2, "gameplay": t_gameplay - t_behaviour, "endless": t3 - t_gameplay}
    result: dict[str, Any] = {
        "neuroplay_version": __version__, "tier": cfg.tier, "split": cfg.split, "device": str(device),
        "metrics": metrics, "beats_copy_last": beats_copy_last(metrics),
        "checkpoint": {"dir": str(cfg.checkpoint), "preset": info["wm"].get("preset"),
                       "vqvae_sha256": info["vqvae"].get("weights_sha256"),
                       "wm_sha256": info["wm"].get("weights_sha256"), "wm_step": info["wm"].get("step")},
        "data": [{k: r[k] for k in ("path", "sha256", "origins")} for r in idx.current],
        "indices": {"path": str(ipath), "written": written, "n_samples": int(len(samples))},
        "config": dataclasses.asdict(cfg),
        "seconds": {"load": round(t1 - t0, 2), "metrics": round(t2 - t1, 2), "probes": round(t3 - t2, 2),
                    **{f"probes_{k}": round(v, 2) for k, v in parts.items()}},
    }
    if cfg.report:
        ex = rollout_examples(vq, wm, data, samples, cfg.examples, cfg.horizon, device) if cfg.examples > 0 else []
        result["report"] = str(write_report(cfg.report, result, ex))
    result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    if cfg.json:
        write_json(cfg.json, result)
    return result


def endless_probe(vq: Any, wm: Any, device: torch.device, decode: DecodeConfig, steps: int,
                  cfg: EvalConfig) -> dict[str, Any]:
    """The endless-dream probe with play's engine and decoder, beside the real game (`evaluation.endless`)."""
    from neuroplay.engine import DreamEngine
    from neuroplay.envs.dream import DreamEnv
    from neuroplay.envs.real import RealEnv
    from neuroplay.evaluation.endless import endless

    engine = DreamEngine(vq, wm, device, "bf16" if cfg.dtype == "bf16" else "fp32", decode=decode, seed=cfg.seed)
    return endless(DreamEnv(engine, seed=cfg.seed), steps, cfg.seed, RealEnv(seed=cfg.seed))


def default_rollouts(tier: str, n: int) -> int:
    """Rolled-out samples of a tier of n samples (see the module docstring)."""
    return CANARY_ROLLOUTS if tier == "canary" else min(n, max(CANARY_ROLLOUTS, round(ROLLOUT_SHARE * n)))


def summary_text(result: dict[str, Any]) -> str:
    """What `neuroplay eval` prints."""
    m = result["metrics"]
    head = (f"eval {result['tier']} ({result['split']}): {m['n_samples']} samples, {m['n_samples_rollout']} "
            f"rolled out to h{m['horizon']}, checkpoint {result['checkpoint']['dir']}, decoder {m['decode']}, "
            f"{result['seconds']['total']:.1f} s")
    fails = [k for k, v in result["beats_copy_last"].items() if v is False]
    tail = "beats copy-last everywhere" if not fails else "does NOT beat copy-last on: " + ", ".join(fails)
    return "\n".join([head, table(m), tail])


def samples_for(data: EvalData, split: str, val_fraction: float = 0.1, seed: int = 0, n: int = 0) -> np.ndarray:
    """Unfrozen (episode, t) samples of a split in seeded random order (for `analyze`); n=0: all."""
    from neuroplay.evaluation.indices import all_samples, split_of

    s = all_samples(data.episode_lengths, split_of(data.n_episodes, split, val_fraction, seed))
    s = s[np.random.default_rng([seed, 99]).permutation(len(s))]
    return s[:n] if n > 0 else s
