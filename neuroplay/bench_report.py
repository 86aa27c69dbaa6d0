"""Measuring and reporting for `neuroplay bench`: percentiles, wall-clock timing, the machine, ratios, tables.

Kept apart from the items themselves (`neuroplay.bench`) so the numbers and their presentation can be
read, and reused by `benchmarks/run_benchmarks.py`, without the model code.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def stats(samples_ms: list[float]) -> dict[str, float]:
    """Median and tail of timings in ms (p90/p95/p99 of few samples are just the slowest ones)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p95, p99 = (float(np.percentile(a, q)) for q in (50, 90, 95, 99))
    return {"p50": p50, "p90": p90, "p95": p95, "p99": p99, "mean": float(a.mean()), "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size)}


def timeit(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall time of `fn` in ms per call; CUDA work is synchronized so the time includes it."""
    sync = syncer(device)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        out = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def syncer(device: torch.device) -> Callable[[], None]:
    """A call that waits for queued device work (a no-op off CUDA)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: CPU model and flags, cores, threads, torch, accelerator."""
    from neuroplay.device import bf16_fast

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
        "bf16_fast": bf16_fast(device), "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def ratios(res: dict[str, Any]) -> dict[str, float]:
    """Speed-ups within this run (p50 over p50): > 1 means the second variant is faster."""
    t, r = res.get("timings_ms", {}), {}

    def p50(d: dict[str, Any], k: str) -> float | None:
        return d[k]["p50"] if k in d else None

    def put(name: str, slow: float | None, fast: float | None) -> None:
        if slow and fast:
            r[name] = slow / fast

    put("decode_fp32_over_bf16_cl", p50(t, "decode_fp32"), p50(t, "decode_bf16_cl"))
    put("wm_full_over_query", p50(t, "wm_full"), p50(t, "wm_query"))
    if "wm_query" in t:
        put("wm_full_over_frame_plus_query", p50(t, "wm_full"), t["wm_query"]["p50"] + t["wm_frame_pass"]["p50"])
    mx = res.get("matrix") or {}
    if "self_fp32" in mx:
        for k in ("wm_query", "wm_full"):
            put(f"{k}_fp32_over_bf16", p50(mx["self_fp32"], k), p50(mx["self_bf16"], k))
        own = p50(mx["self_bf16"], "wm_query") or p50(mx["self_bf16"], "wm_full")
        for key, v in mx.items():
            if not key.startswith("self_") and key.endswith("_bf16"):
                put(f"{key[:-5]}_full_bf16_over_self_step_bf16", v["wm_full"]["p50"], own)
    return r


def format_table(res: dict[str, Any]) -> str:
    """A Markdown table of the timings with the machine and model above it."""
    m, mo = res["machine"], res["model"]
    lines = [f"neuroplay bench: {mo['preset']} ({mo['source']}, {mo['attention']}, d{mo['d_model']} "
             f"L{mo['n_layers']}, {mo['dtype']}{', compiled' if mo['compile'] else ''}) on {m['device']}"
             f"{' ' + m['gpu'] if 'gpu' in m else ''}; {m['cpu']}, {m['cores']} cores, {m['torch_threads']} "
             f"threads, torch {m['torch']}, load {m['load_avg_1m']}", "",
             "| item | p50 ms | p90 ms | p95 ms | p99 ms | FPS at p50 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows = list(res["timings_ms"].items())
    rows += [(f"matrix {key} {k}", s) for key, v in (res.get("matrix") or {}).items() for k, s in v.items()]
    for k, s in rows:
        fps = f"{1e3 / s['p50']:.1f}" if s["p50"] > 0 else "-"
        lines.append(f"| {k} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {fps} |")
    lines.append("")
    if res.get("paced"):
        p = res["paced"]
        lines.append(f"paced loop: {p['frames']} frames at {p['fps_target']:g} FPS target: "
                     f"{p['fps_sustained']:.2f} FPS sustained, {p['dropped']} dropped, "
                     f"key-to-frame p95 {p['key_to_frame_ms']['p95']:.1f} ms")
    th = res.get("throughput", {})
    if "train" in th:
        lines.append(f"training: {th['train']['samples_per_s']:.1f} samples/s "
                     f"({th['train']['step_ms']['p50']:.0f} ms/step, {th['train']['targets_per_step']} targets)")
    for t in th.get("train_sweep", [])[1:]:
        lines.append(f"training, batch {t['batch_size']}: {t['samples_per_s']:.1f} samples/s "
                     f"({t['step_ms']['p50']:.0f} ms/step, {t['targets_per_step']} targets)")
    if "collect" in th:
        lines.append(f"collection: {th['collect']['frames_per_s']:.0f} frames/s")
    for k, v in res.get("ratios", {}).items():
        lines.append(f"ratio {k}: {v:.2f}x")
    lines.append(f"peak RSS: {res['peak_rss_play_mb']:.0f} MiB after the play items, "
                 f"{res['peak_rss_mb']:.0f} MiB in all")
    return "\n".join(lines)
