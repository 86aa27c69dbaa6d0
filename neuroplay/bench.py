"""`neuroplay bench`: how fast the dream runs on this machine, measured rather than guessed.

A command, not timed unit tests: speed depends on the machine and its load, so tests only check that it
runs and writes its fields; the numbers go in docs/performance.md with the machine recorded in the JSON.

What is measured (batch 1, after `--warmup` calls, `--steps` timed calls each, p50/p90/p95/p99 in ms):
- `wm_frame_pass`, `wm_query`: the two halves of a step (the model's `prepare` and `next_logits`); only the
  query sits between key press and display (the engine runs the frame pass while waiting for the key).
  For `lite` the frame pass is the new frame's pass into the KV cache; for `lite2` the commit of the previous
  frame under the action played plus the layers below `action_layer`, the query the layers from it up; for
  full attention the frame pass only rolls the window;
- `wm_full`: the full recompute of one step (`spec`'s only path; for `lite` the window without a cache);
- `decode`: the tokenizer's decode to uint8 frames as the engine runs it; for a VQ-VAE also `decode_fp32`,
  `decode_fp32_cl`, `decode_bf16_cl`: plain vs the engine's layout and dtype;
- `key_to_frame` (engine step after `prepare`: query, argmax, decode, to numpy) and `play_loop`
  (prepare + step: one frame of the game loop without a window), whose p50 gives the FPS ceiling;
- with `--paced-frames N`: the headless game loop paced at `--fps`, its sustained FPS and dropped frames;
- `train`: samples/s of the world-model training step on random tokens (the preset's batch shape,
  importance-weighted CE, AdamW; no data loading), `collect`: frames/s of `neuroplay collect` (random policy);
- `--matrix`: the same world model in fp32 and bf16, cached vs full, plus the full forward of the
  `--matrix-with` presets (random init), so ratios are taken within one run under the same machine load.
Random-init weights (`--preset`) time the same as trained ones: nothing here depends on the values.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from neuroplay import __version__
from neuroplay.bench_report import format_table, machine_info, peak_rss_mb, ratios, stats, syncer, timeit
from neuroplay.cliutil import add_dataclass_args, build
from neuroplay.config import TOKEN_H, TOKEN_W
from neuroplay.errors import UsageError

ITEMS = ("wm", "decode", "loop", "train", "collect")


@dataclass
class BenchConfig:
    """Flags of `neuroplay bench`."""

    checkpoint: str = ""
    """Run folder with vqvae/ and wm/ (e.g. runs/lite or assets/checkpoints/lite); overrides --preset."""
    preset: str = "lite"
    """Preset to time with random-init weights when no --checkpoint is given: spec, lite, lite2, tiny, tiny-fused."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """Engine precision: auto is bf16 where the device runs it fast (AVX-512 bf16 / AMX CPUs, CUDA)."""
    compile: bool = False
    """torch.compile the world model step (12-25 s start-up on a CPU)."""
    steps: int = 50
    """Timed calls per item."""
    warmup: int = 5
    """Untimed calls before each item (allocator, caches, compilation)."""
    items: list[str] = field(default_factory=lambda: list(ITEMS))
    """What to measure: any of wm, decode, loop, train, collect."""
    paced_frames: int = 0
    """Also run the headless game loop paced at --fps for this many frames and count dropped frames."""
    fps: float = 15.0
    """Target frame rate of the paced loop."""
    train_steps: int = 3
    """Timed training steps (after one warm-up step)."""
    train_batch: list[int] = field(default_factory=list)
    """Clips per step of the train item; several give one result each, to see where a GPU saturates (default:
    the preset's)."""
    collect_frames: int = 1000
    """Transitions collected for the collection throughput."""
    matrix: bool = False
    """Add the variant comparison: wm fp32 vs bf16, cached vs full, and the --matrix-with presets."""
    matrix_with: str = "spec"
    """Comma-separated presets whose full forward joins the matrix (random init); empty for none."""
    threads: int = 0
    """torch intra-op threads (0: torch's default, one per core)."""
    seed: int = 0
    """Seed of the random weights, tokens and actions."""
    json: str = ""
    """Write the results to this JSON file."""


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure dream step latency, FPS, decode, training and collection speed",
                       description=(__doc__ or "").strip().splitlines()[0])
    add_dataclass_args(p, BenchConfig)


def run_bench(args: argparse.Namespace) -> int:
    cfg = build(BenchConfig, args)
    results = bench(cfg)
    print(format_table(results))
    if cfg.json:
        from neuroplay.checkpoint import atomic_write_bytes

        out = Path(cfg.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
        print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------------ items
def load_models(cfg: BenchConfig) -> tuple[Any, Any, str, str]:
    """(vq, wm, preset name, source): a checkpoint's weights or the preset's random init."""
    from neuroplay.checkpoint import load_pair
    from neuroplay.config import get_preset
    from neuroplay.models.vqvae import VQVAE
    from neuroplay.models.world_model import TemporalWorldModel

    if cfg.checkpoint:
        vq, wm, info = load_pair(cfg.checkpoint, "cpu")
        return vq, wm, str(info["wm"].get("preset", "?")), str(Path(cfg.checkpoint))
    preset = get_preset(cfg.preset)
    torch.manual_seed(cfg.seed)
    return VQVAE(preset.vq).eval(), TemporalWorldModel(preset.wm).eval(), preset.name, "random-init"


# ------------------------------------------------------------------------------------------ items
def bench_wm(wm: Any, device: torch.device, cfg: BenchConfig, next_logits: Any = None,
             halves: bool = True) -> dict[str, dict[str, float]]:
    """The world model's step alone, through its dream interface, in the game's order: the frame pass that needs no
    key (`prepare`), then the keyed step (`next_logits`); and the full recompute over the 4-frame window.

    Timed alternately, as the game runs them: for a fused model a frame pass without a query before it would
    recompute the upper layers. `next_logits`: the engine's (compiled) step; default the model's. `halves=False`
    times the full recompute alone."""
    g = torch.Generator().manual_seed(cfg.seed)
    c = wm.cfg
    hist = torch.randint(c.n_vocab, (1, c.max_history, c.n_tokens), generator=g).to(device)
    h_act = torch.full((1, c.max_history - 1), 2, device=device)
    action = torch.tensor([2], device=device)
    step = next_logits or wm.next_logits
    with torch.inference_mode():
        window = wm.start(hist, h_act, cached=False)
        out = {"wm_full": stats(timeit(lambda: wm.next_logits(window, action), cfg.steps, cfg.warmup, device))}
        if not halves:
            return out
        state = wm.start(hist, h_act, one_by_one=True)
        frame = hist[:, -1]  # the window stays 4 frames: each push drops the oldest
        sync, push_ms, query_ms = syncer(device), [], []
        for i in range(cfg.warmup + cfg.steps):
            wm.advance(state, frame, action)
            t0 = time.perf_counter()
            wm.prepare(state)
            sync()
            t1 = time.perf_counter()
            step(state, action)
            sync()
            t2 = time.perf_counter()
            if i >= cfg.warmup:
                push_ms.append((t1 - t0) * 1e3)
                query_ms.append((t2 - t1) * 1e3)
    out.update({"wm_frame_pass": stats(push_ms), "wm_query": stats(query_ms)})
    return out


def bench_decode(vq: Any, device: torch.device, cfg: BenchConfig) -> dict[str, dict[str, float]]:
    """Tokens to uint8 frames. `decode`: the tokenizer as the engine runs it (bf16 where fast). A VQ-VAE's
    convolutional decoder is also timed three ways: fp32 plain, fp32 channels_last, bf16 channels_last."""
    from neuroplay.device import bf16_fast
    from neuroplay.models.vqvae import to_uint8_image

    g = torch.Generator().manual_seed(cfg.seed)
    toks = torch.randint(vq.n_codes, (1, TOKEN_H, TOKEN_W), generator=g).to(device)
    engine_tok = copy.deepcopy(vq).to(device).eval()
    engine_tok.for_inference(torch.bfloat16 if bf16_fast(device) else torch.float32)
    out = {"decode": stats(timeit(lambda: engine_tok.decode_uint8(toks), cfg.steps, cfg.warmup, device))}
    if not hasattr(vq, "decoder"):  # a table lookup: no layouts or dtypes to compare
        return out
    z = vq.quantizer.to(device).lookup(toks)
    for name, dt, fmt in (("decode_fp32", torch.float32, torch.contiguous_format),
                          ("decode_fp32_cl", torch.float32, torch.channels_last),
                          ("decode_bf16_cl", torch.bfloat16, torch.channels_last)):
        dec = copy.deepcopy(vq.decoder).to(device, dt, memory_format=fmt).eval()
        zz = z.to(dt).contiguous(memory_format=fmt)
        out[name] = stats(timeit(lambda d=dec, x=zz: to_uint8_image(d(x)).cpu().numpy(), cfg.steps, cfg.warmup,
                                 device))
    return out


def loop_samples(engine: Any, steps: int, warmup: int, rng: np.random.Generator) -> dict[str, list[float]]:
    """Raw per-step ms of the game's step (prepare while waiting, then the keyed step), after `warmup`.

    Raw, not summarised, so callers can pool samples over interleaved rounds (benchmarks/lite_sizes.py).
    """
    parts: dict[str, list[float]] = {"prepare": [], "model": [], "decode": [], "key_to_frame": [], "play_loop": []}
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        prep = engine.prepare()
        s = engine.step(int(rng.integers(4)))
        total = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            for k in ("model", "decode"):
                parts[k].append(s.timings_ms[k])
            parts["prepare"].append(prep)
            parts["key_to_frame"].append(s.timings_ms["total"])
            parts["play_loop"].append(total)
    return parts


def bench_loop(engine: Any, cfg: BenchConfig) -> dict[str, Any]:
    """The engine's step as the game calls it, summarised; then the paced loop if asked."""
    rng = np.random.default_rng(cfg.seed)
    n_vocab, n = engine.wm.cfg.n_vocab, engine.wm.cfg.n_tokens
    engine.reset(tokens=rng.integers(n_vocab, size=(engine.window, n)))
    out: dict[str, Any] = {k: stats(v) for k, v in loop_samples(engine, cfg.steps, cfg.warmup, rng).items()}
    out["fps_ceiling"] = 1e3 / out["play_loop"]["p50"]
    if cfg.paced_frames > 0:
        out["paced"] = paced_loop(engine, cfg.paced_frames, cfg.fps, rng)
    return out


def paced_loop(engine: Any, frames: int, fps: float, rng: np.random.Generator) -> dict[str, Any]:
    """The headless game loop at a fixed rate: a frame is dropped when it is not shown by its deadline.

    Per frame, as in the game: the keyed step (query + decode) produces the frame, which is shown; then
    the next frame pass runs while waiting for the next key, then sleep to the deadline. A late frame
    moves the schedule to now (no catch-up burst), so sustained FPS stays honest.
    """
    budget, dropped, shown, work = 1.0 / fps, 0, [], []
    start = deadline = time.perf_counter()
    for _ in range(frames):
        t0 = time.perf_counter()
        engine.step(int(rng.integers(4)))
        t1 = time.perf_counter()
        engine.prepare()
        now = time.perf_counter()
        shown.append((t1 - t0) * 1e3)
        work.append((now - t0) * 1e3)
        deadline += budget
        if t1 > deadline:
            dropped, deadline = dropped + 1, now
        elif now < deadline:
            time.sleep(deadline - now)
    elapsed = time.perf_counter() - start
    return {"frames": frames, "fps_target": fps, "fps_sustained": frames / elapsed, "dropped": dropped,
            "key_to_frame_ms": stats(shown), "work_ms": stats(work)}


def bench_train(
    preset_name: str, wm_cfg: Any, device: torch.device, cfg: BenchConfig, batch: int | None = None
) -> dict[str, Any]:
    """Training samples/s of the world model (targets per second; a block-causal clip of n frames is n-1).

    `batch`: clips (or samples) per step; None takes the preset's training batch.
    """
    from neuroplay.config import PRESETS
    from neuroplay.device import bf16_fast
    from neuroplay.models.world_model import TemporalWorldModel
    from training.importance import ImportanceConfig, importance_weights, weighted_ce
    from training.wm import sequence_loss

    train = PRESETS[preset_name].train if preset_name in PRESETS else {}
    b, n = batch or int(train.get("batch_size", 8)), int(train.get("seq_frames", 12))
    torch.manual_seed(cfg.seed)
    model = TemporalWorldModel(wm_cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dist = (1 - torch.eye(wm_cfg.n_vocab)).to(device)
    imp, w, v, L = ImportanceConfig(), wm_cfg.max_history, wm_cfg.n_vocab, wm_cfg.n_tokens
    seq = model.clip_training  # clips of n frames, or one-step windows
    frames = torch.randint(v, (b, n if seq else w + 1, L), device=device)
    actions = torch.randint(4, (b, n - 1 if seq else 1), device=device)
    amp = bf16_fast(device) and cfg.dtype != "fp32"

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            if seq:
                loss, _ = sequence_loss(model, frames, actions, dist, imp, w)
            else:
                hist, target = frames[:, :w], frames[:, w]
                logits = model(hist, actions[:, 0]).logits
                loss = weighted_ce(logits, target, importance_weights(hist, target, dist, imp))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = syncer(device)
    step()
    times = []
    for _ in range(max(1, cfg.train_steps)):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    per_step = b * (n - 1) if seq else b
    st = stats(times)
    return {"batch_size": b, "seq_frames": n if seq else None, "targets_per_step": per_step, "amp_bf16": amp,
            "step_ms": st, "samples_per_s": per_step * 1e3 / st["p50"]}


def bench_collect(cfg: BenchConfig) -> dict[str, Any]:
    """Frames/s of `neuroplay collect` (AtariVectorEnv, random policy, saving included)."""
    from neuroplay.data.collect import CollectConfig, collect

    with tempfile.TemporaryDirectory() as d:
        c = CollectConfig(out=str(Path(d) / "bench.npz"), frames=cfg.collect_frames, policy="random",
                          seed=cfg.seed, progress_bar=False)
        t0 = time.perf_counter()
        eps = collect(c)
        dt = time.perf_counter() - t0
    return {"frames": int(eps.n_transitions), "envs": c.envs, "seconds": dt, "frames_per_s": eps.n_transitions / dt}


def bench_matrix(wm: Any, device: torch.device, cfg: BenchConfig) -> dict[str, Any]:
    """The same world model in fp32 and bf16 (cached and full), plus other presets' full forward."""
    from neuroplay.config import get_preset
    from neuroplay.models.world_model import TemporalWorldModel

    out: dict[str, Any] = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out[f"self_{name}"] = bench_wm(copy.deepcopy(wm).to(device, dt).eval(), device, cfg)
    for p in [s.strip() for s in cfg.matrix_with.split(",") if s.strip()]:
        torch.manual_seed(cfg.seed)
        other = TemporalWorldModel(get_preset(p).wm).eval()
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            m = copy.deepcopy(other).to(device, dt).eval()
            out[f"{p}_{name}"] = bench_wm(m, device, cfg, halves=False)
            del m
    return out


# ------------------------------------------------------------------------------------------ driver
def bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the selected items and return the results as a JSON-able dict (torch's thread count restored)."""
    threads = torch.get_num_threads()
    try:
        return _bench(cfg)
    finally:
        torch.set_num_threads(threads)


def _bench(cfg: BenchConfig) -> dict[str, Any]:
    from neuroplay.device import resolve_device
    from neuroplay.engine import DreamEngine

    bad = sorted(set(cfg.items) - set(ITEMS))
    if bad:
        raise UsageError(f"--items: unknown {', '.join(bad)}; choose from {', '.join(ITEMS)}")
    if cfg.steps < 1 or cfg.warmup < 0:
        raise UsageError("--steps must be >= 1 and --warmup >= 0")
    if any(b < 1 for b in cfg.train_batch):
        raise UsageError("--train-batch: batch sizes must be >= 1")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    vq, wm, preset_name, source = load_models(cfg)
    wm_cfg = wm.cfg
    engine = DreamEngine(vq, wm, device, cfg.dtype, compile=cfg.compile, seed=cfg.seed)
    res: dict[str, Any] = {
        "neuroplay_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": asdict(cfg), "machine": machine_info(device),
        "model": {"preset": preset_name, "source": source, "attention": wm_cfg.attention,
                  "d_model": wm_cfg.d_model, "n_layers": wm_cfg.n_layers, "context_frames": wm.context_frames,
                  "fused_query": wm_cfg.fused_query, "action_layer": wm_cfg.action_layer,
                  "wm_params": sum(p.numel() for p in wm.parameters()),
                  "vq_params": sum(p.numel() for p in vq.parameters()),
                  "dtype": str(engine.dtype).replace("torch.", ""), "compile": cfg.compile},
        "timings_ms": {},
    }
    if "wm" in cfg.items:
        res["timings_ms"].update(bench_wm(engine.wm, device, cfg, engine._next))
    if "decode" in cfg.items:
        res["timings_ms"].update(bench_decode(vq, device, cfg))
    if "loop" in cfg.items:
        loop = bench_loop(engine, cfg)
        res["fps_ceiling"] = loop.pop("fps_ceiling")
        res["paced"] = loop.pop("paced", None)
        res["timings_ms"].update(loop)
    res["peak_rss_play_mb"] = peak_rss_mb()  # before the matrix and training items allocate more
    if cfg.matrix:
        res["matrix"] = bench_matrix(wm, device, cfg)
    res["throughput"] = {}
    if "train" in cfg.items:
        sweep = [bench_train(preset_name, wm_cfg, device, cfg, b) for b in (cfg.train_batch or [None])]
        res["throughput"]["train"] = sweep[0]
        if len(sweep) > 1:
            res["throughput"]["train_sweep"] = sweep
    if "collect" in cfg.items:
        res["throughput"]["collect"] = bench_collect(cfg)
    res["ratios"] = ratios(res)
    res["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return res
