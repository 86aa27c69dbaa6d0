"""What every trainer shares: device and precision, logging, resumable state, Ctrl-C and NaN handling.

Resume is exact by construction rather than by saving sampler internals: every step draws its batch,
its rollout/teacher-forcing coin flips and its dropout masks from RNGs seeded with (seed, step, rank),
so step s of a resumed run sees what step s of an uninterrupted run saw. The optimizer and scheduler
state are saved with `torch.save` of tensors only and loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuroplay.checkpoint import CheckpointError, atomic_write_bytes, kind_of, load_checkpoint, save_checkpoint
from neuroplay.device import bf16_fast
from neuroplay.errors import NeuroplayError

STATE_FILE = "train_state.pt"


class TrainingStopped(NeuroplayError, RuntimeError):
    """Training stopped on purpose (non-finite loss); the message says why and what was kept."""


@dataclass
class Dist:
    """torch.distributed facts of this process (a single process when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), world, local)


def agree_any(flag: bool, dist_info: Dist, device: torch.device) -> bool:
    """True on every rank when it is true on any (a stop that one rank's clock decides must stop all)."""
    if dist_info.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The RNG of one training step: the same (seed, step, rank) always gives the same draws."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + rank)


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed torch's global RNGs (dropout masks) for one step."""
    torch.manual_seed((seed * 1_000_003 + step) * 97 + rank + 13)


def autocast(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    """bf16 autocast when asked (`bf16`) or when `auto` and the device runs bf16 fast."""
    use = amp == "bf16" or (amp == "auto" and bf16_fast(device))
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else nullcontext()


def lr_at(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% of `base`.

    The decay follows whichever runs out first: the steps, or (`time_frac`, the share of a wall-clock
    budget spent) the time. So a run given minutes instead of steps still ends at the low learning rate.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class RunLogger:
    """TensorBoard (when installed) plus a JSON-lines log the game's train launcher reads."""

    def __init__(self, run_dir: Path, stage: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / f"{stage}_log.jsonl"
        self.stage = stage
        self.tb = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb" / stage))
            except Exception:  # tensorboard is optional; the JSONL log always works
                self.tb = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"stage": self.stage, "step": step, "time": time.time(), **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{self.stage}/{k}", v, step)

    def image(self, step: int, tag: str, img_hwc_uint8: torch.Tensor) -> None:
        if self.enabled and self.tb is not None:
            self.tb.add_image(f"{self.stage}/{tag}", img_hwc_uint8.numpy(), step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def image_grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of (N, H, W, 3) uint8 frames -> one (rows*H, N*W, 3) image for TensorBoard."""
    return torch.cat([torch.cat(list(r), 1) for r in rows], 0)


def save_resume(
    stage_dir: Path,
    model: nn.Module,
    preset: str,
    optimizer: torch.optim.Optimizer,
    step: int,
    best: float | None,
    config: Any,
    info: dict[str, Any],
    elapsed_s: float = 0.0,
) -> None:
    """Model checkpoint + optimizer/progress state under `<run>/last/<stage>`, atomically.

    `elapsed_s`: training seconds so far, so that a resumed run with a wall-clock budget spends only the rest.
    """
    save_checkpoint(stage_dir, _unwrap(model), preset, {**info, "step": step, "train_config": asdict(config)})
    state = {"optimizer": optimizer.state_dict(), "step": step, "best": best, "elapsed_s": float(elapsed_s)}
    tmp = stage_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, stage_dir / STATE_FILE)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{stage_dir / STATE_FILE}: cannot write resume state ({e.strerror or e})") from e
    atomic_write_bytes(stage_dir / "progress.json", json.dumps({"step": step, "best": best}).encode())


def load_resume(
    stage_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, float | None, float]:
    """Restore what `save_resume` wrote; returns (step, best, training seconds so far)."""
    load_weights(stage_dir, model, "--resume")
    path = stage_dir / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot read resume state ({e.__class__.__name__})") from e
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), state.get("best"), float(state.get("elapsed_s", 0.0))


def load_weights(directory: Path, model: nn.Module, flag: str) -> None:
    """Copy a checkpoint's weights into `model`; its kind and config must match the model's field for field."""
    own = _unwrap(model)
    loaded, _ = load_checkpoint(directory, kind_of(own))
    if loaded.cfg != own.cfg:
        fields = [k for k in vars(own.cfg) if getattr(loaded.cfg, k) != getattr(own.cfg, k)]
        raise CheckpointError(f"{directory}: {flag}: different model config "
                              f"(differs from the preset in {', '.join(fields[:4])})")
    own.load_state_dict(loaded.state_dict())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def check_finite(loss: torch.Tensor, step: int, stage: str, kept: Path) -> None:
    """Stop with a clear message on a NaN/inf loss; the last good checkpoint stays in `kept`."""
    if not torch.isfinite(loss):
        raise TrainingStopped(
            f"{stage}: loss became {loss.item()} at step {step}; stopped without saving it. "
            f"The last good checkpoint is in {kept} (lower --lr or resume from it)."
        )


def progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """tqdm bar on stderr (disabled when not the main process or when asked)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.05)
