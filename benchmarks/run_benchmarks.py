"""Run the benchmark matrix of `neuroplay bench` and write one JSON file and one Markdown table.

Why a script beside the command: docs/performance.md's table compares configurations (presets, bf16 vs fp32,
compiled or not). Each configuration runs in its own process, one after another, so peak memory is its
own and no two measurements share the CPU; ratios between variants are taken from within one run
(`--matrix`), because the load of a shared machine drifts between runs.

    python benchmarks/run_benchmarks.py                       # lite and spec, auto dtype, CPU
    python benchmarks/run_benchmarks.py --configs lite:fp32 lite:bf16:compile --steps 100
    python benchmarks/run_benchmarks.py --checkpoint runs/lite --out benchmarks/results/lite-trained

A config is `PRESET[:DTYPE][:compile]` (DTYPE auto, bf16 or fp32). Spec on a CPU skips the training
throughput by default (one step of its full batch takes tens of seconds); `--items` changes that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CONFIGS = ["lite", "spec"]


def parse_config(text: str) -> dict[str, Any]:
    """`lite:bf16:compile` -> {"preset": "lite", "dtype": "bf16", "compile": True}."""
    parts = text.split(":")
    cfg: dict[str, Any] = {"preset": parts[0], "dtype": "auto", "compile": False}
    for p in parts[1:]:
        if p in ("auto", "bf16", "fp32"):
            cfg["dtype"] = p
        elif p == "compile":
            cfg["compile"] = True
        else:
            raise SystemExit(f"--configs: unknown part {p!r} in {text!r} (PRESET[:auto|bf16|fp32][:compile])")
    return cfg


def bench_args(cfg: dict[str, Any], args: argparse.Namespace, out: Path) -> list[str]:
    """The `neuroplay bench` command line of one configuration."""
    cmd = [sys.executable, "-m", "neuroplay.cli", "bench", "--device", args.device, "--dtype", cfg["dtype"],
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--json", str(out)]
    cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else ["--preset", cfg["preset"]]
    items = args.items or (["wm", "decode", "loop"] if cfg["preset"] == "spec" else ["wm", "decode", "loop", "train"])
    cmd += ["--items", *items]
    if cfg["compile"]:
        cmd.append("--compile")
    if args.matrix and cfg["preset"] != "spec":
        cmd += ["--matrix", "--matrix-with", args.matrix_with]
    if args.paced_frames:
        cmd += ["--paced-frames", str(args.paced_frames), "--fps", str(args.fps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def name_of(cfg: dict[str, Any]) -> str:
    dtype = "" if cfg["dtype"] == "auto" else f" {cfg['dtype']}"
    return cfg["preset"] + dtype + (" compiled" if cfg["compile"] else "")


def markdown(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One table row per configuration (medians, the tail of the key-to-frame latency, FPS, memory)."""
    if not rows:
        return "no results\n"
    m = rows[0][1]["machine"]
    head = (f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
            f"device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; batch 1, milliseconds.\n\n")
    lines = ["| config | dtype | frame pass p50 | query p50 | full recompute p50 | decode p50 (fp32 / bf16 cl) "
             "| key-to-frame p50 / p95 | loop p50 | FPS | train samples/s | peak RSS MiB (play / all) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def ms(t: dict[str, Any], k: str, q: str = "p50") -> str:
        return f"{t[k][q]:.1f}" if k in t else "-"

    for name, r in rows:
        t = r["timings_ms"]
        train = r.get("throughput", {}).get("train")
        lines.append(" | ".join([
            f"| {name}", r["model"]["dtype"], ms(t, "wm_frame_pass"), ms(t, "wm_query"), ms(t, "wm_full"),
            f"{ms(t, 'decode_fp32')} / {ms(t, 'decode_bf16_cl')}", f"{ms(t, 'key_to_frame')} / "
            f"{ms(t, 'key_to_frame', 'p95')}", ms(t, "play_loop"), f"{r.get('fps_ceiling', 0):.1f}",
            f"{train['samples_per_s']:.1f}" if train else "-",
            f"{r['peak_rss_play_mb']:.0f} / {r['peak_rss_mb']:.0f} |"]))
    extra = []
    for name, r in rows:
        for k, v in r.get("ratios", {}).items():
            extra.append(f"- {name}: {k} = {v:.2f}x")
        if r.get("paced"):
            p = r["paced"]
            extra.append(f"- {name}: paced loop {p['frames']} frames at {p['fps_target']:g} FPS: "
                         f"{p['fps_sustained']:.2f} FPS sustained, {p['dropped']} dropped, "
                         f"key-to-frame p95 {p['key_to_frame_ms']['p95']:.1f} ms")
    notes = "\n\nWithin-run ratios (p50 / p50) and the paced loop:\n\n" + "\n".join(extra) if extra else ""
    return head + "\n".join(lines) + notes + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="PRESET[:auto|bf16|fp32][:compile] ...")
    ap.add_argument("--checkpoint", default="", help="time a trained run folder instead of random-init presets")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ap.add_argument("--steps", type=int, default=50, help="timed calls per item")
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls per item")
    ap.add_argument("--items", nargs="+", default=None, help="items passed to neuroplay bench (default per preset)")
    ap.add_argument("--matrix", action=argparse.BooleanOptionalAction, default=True,
                    help="within-run comparisons for non-spec configs (fp32 vs bf16, cache vs full, spec forward)")
    ap.add_argument("--matrix-with", default="spec", help="presets whose full forward joins the matrix")
    ap.add_argument("--paced-frames", type=int, default=0, help="also run the paced game loop for N frames")
    ap.add_argument("--fps", type=float, default=15.0, help="target of the paced loop")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", default="benchmarks/results/latest", help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    configs = [parse_config(c) for c in args.configs]
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(configs):
            path = Path(tmp) / f"{i}.json"
            cmd = bench_args(cfg, args, path)
            print("$ " + " ".join(cmd[1:]), flush=True)
            done = subprocess.run(cmd)
            if done.returncode != 0:
                print(f"{name_of(cfg)}: bench failed with status {done.returncode}", file=sys.stderr)
                continue
            rows.append((name_of(cfg), json.loads(path.read_text())))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({name: r for name, r in rows}, indent=2) + "\n")
    table = markdown(rows)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0 if len(rows) == len(configs) else 1


if __name__ == "__main__":
    sys.exit(main())
