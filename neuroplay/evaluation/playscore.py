"""One number for "does the dream play Breakout": the play score, and the small probe pass that measures it.

Training keeps the checkpoint with the lowest val loss by default, but the loss is dominated by the static
board: a checkpoint can lower it while the ball stops launching or the lives stop counting down. The play
score is what a player would notice, from the probes of `neuroplay eval` (their gates; with eval's
`--decode`, argmax in training's check): the mean of the rates below, each in [0, 1], over those measured.
`neuroplay train wm --select play` keeps the checkpoint that scores best on it (training/wm.py); `neuroplay
eval` prints it beside its parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuroplay.evaluation.frames import EvalData
from neuroplay.evaluation.gameplay import gameplay_probes
from neuroplay.evaluation.probes import run_probes

PLAY_RATES: tuple[str, ...] = (
    "action_response_rate", "fire_launch_rate", "reset_launch_rate", "flight_visible", "bounce_rate", "hit_rate",
    "hit_score_rate", "lost_rate",
)
"""Probe rates where higher plays better (their gates: docs/evaluation.md)."""
PLAY_INVERSE: tuple[str, ...] = ("noop_launch_rate", "reset_noop_rate")
"""Rates of things that must not happen (a ball launched by NOOP): they count as 1 - rate."""


def play_score(metrics: dict[str, Any]) -> float | None:
    """Mean of the play rates present in `metrics` (None where none was measured)."""
    parts = [float(metrics[k]) for k in PLAY_RATES if metrics.get(k) is not None]
    parts += [1.0 - float(metrics[k]) for k in PLAY_INVERSE if metrics.get(k) is not None]
    return float(np.mean(parts)) if parts else None


@torch.inference_mode()
def play_check(vq: Any, wm: Any, data: EvalData, samples: np.ndarray, *, states: int = 12, seed: int = 0,
               batch_size: int = 16, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The probes behind the play score on `states` states each (the canary's sizes at 12; 20 for the action
    response, whose states are cheap), argmax, with the reset-screen launch tried once (argmax is
    deterministic). Returns the probes' figures and `play_score`. Leaves `wm` in eval mode."""
    wm.eval()
    m = run_probes(vq, wm, data, samples, response_states=max(states, 20), fire_states=states, ball_states=0,
                   seed=seed, batch_size=batch_size, device=device)
    m.update(gameplay_probes(vq, wm, data, samples, states=states, reset_tries=1, seed=seed, batch_size=batch_size,
                             device=device))
    m["play_score"] = play_score(m)
    return m
