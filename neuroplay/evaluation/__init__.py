"""Evaluation: frozen gold-eval indices, metrics beside copy-last baselines, behaviour probes, reports.

Library API (training and tools call these directly; `neuroplay eval` / `analyze` wrap them):
`frozen_samples(files, tier)` gives a tier's data and samples, `evaluate(vq, wm, data, samples, ...)` its
figures, `run_probes(...)` the behaviour checks, `gameplay_probes(...)` the game's events (launch, flight,
bounce, brick hit, lost ball), `endless(dream_env, steps)` a long autopilot dream beside the real game,
`run_suite(EvalConfig(...))` the whole command.
Names resolve lazily, so that parsing the command line (`neuroplay --help`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "INDICES_FILE": "indices", "EvalIndices": "indices", "all_samples": "indices", "load_or_create": "indices",
    "EvalData": "frames", "evaluate": "metrics", "psnr_from_mse": "metrics", "rollout": "dreamer",
    "Dreamer": "dreamer", "gameplay_probes": "gameplay", "endless": "endless",
    "ball_alive": "probes", "run_probes": "probes", "EvalConfig": "suite", "run_suite": "suite",
    "frozen_samples": "suite",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'neuroplay.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"neuroplay.evaluation.{_WHERE[name]}"), name)
