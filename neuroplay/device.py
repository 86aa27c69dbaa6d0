"""Device and precision choice shared by training, the engine and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch

from neuroplay.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an unavailable explicit choice is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available on this machine")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise UsageError(f"--device: unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)")
    return torch.device(name)


def bf16_fast(device: torch.device) -> bool:
    """CUDA with bf16 support, or a CPU with AVX-512 bf16 / AMX (where bf16 matmuls run ~2x fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False
