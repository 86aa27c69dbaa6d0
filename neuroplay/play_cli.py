"""`neuroplay play | record | compare | replay`: the game's subcommands (all open the same window).

Flags come from one `PlayConfig`; each subcommand shows the ones that make sense for it. pygame is
imported only when a game actually starts (`neuroplay.app.main`), so `--help` and the other
subcommands never load it. Errors (no checkpoint, a broken one, no display, no ROM, a bad file)
surface as exceptions that `neuroplay.cli` prints as one line.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Literal

from neuroplay.cliutil import add_dataclass_args, build
from neuroplay.config import DecodeConfig, DecodeMode
from neuroplay.errors import UsageError


@dataclass
class PlayConfig:
    """Flags of `neuroplay play` (and `record`, `compare`, `replay`)."""

    mode: Literal["dream", "real", "compare", "record", "replay", "menu"] = "dream"
    """Start in this mode (menu: the start menu; Esc always leads there)."""
    checkpoint: str = ""
    """Run folder with vqvae/ and wm/ (default: the bundled assets/checkpoints/lite)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    fps: float = 15.0
    """Game frames per second (0: as fast as possible, stepping in the UI thread)."""
    scale: int = 0
    """Integer window scale of the 84x64 frame (0: fit the screen)."""
    decode: DecodeMode = DecodeConfig.mode
    """How the dream's tokens are drawn: coupled (sure tokens exact, uncertain events drawn together), argmax or
    sample (each token on its own)."""
    temperature: float = DecodeConfig.temperature
    """Softmax temperature of sample and coupled."""
    confident: float = DecodeConfig.confident
    """coupled: a token whose top probability is at least this takes its argmax."""
    threads: int = 0
    """torch threads of the dream step (0: one fewer than the cores, at least 1, so the window and the emulator
    keep a core; OMP_NUM_THREADS, when set, wins)."""
    compile: bool = False
    """torch.compile the world model's step: 12-25 s start-up on a CPU, up to 30 percent faster; CUDA graphs on GPU."""
    seed: int = 0
    """Emulator and sampling seed."""
    autopilot: Literal["off", "tracker", "random"] = "off"
    """Who plays at the start: you, the ball tracker, or random held keys (T toggles in game)."""
    headless: bool = False
    """No window (SDL dummy video driver): for tests, benchmarks and screenshots."""
    frames: int = 0
    """Stop after this many UI ticks (0: run until closed)."""
    stats: str = ""
    """Write frame statistics (sustained FPS, frame-time p50/p95/p99, model ms, dropped frames) to this JSON."""
    video: str = ""
    """Save the whole run to this .gif or .mp4."""
    keys: str = ""
    """Scripted keys by UI tick, e.g. '0:space,5-20:left,30:f1,40:escape' (TICK:KEY taps, A-B:KEY holds)."""
    out: str = "recordings/human.npz"
    """record: dataset file the episodes are appended to (created if missing)."""
    file: str = ""
    """replay: episode file to step through and branch from."""
    shots_dir: str = "screenshots"
    """Folder for screenshots (S) and videos (V)."""
    video_format: Literal["gif", "mp4"] = "gif"
    """What V saves: a GIF (plays anywhere) or an MP4 (small, for long takes)."""


def _check(cfg: PlayConfig) -> PlayConfig:
    if cfg.fps < 0:
        raise UsageError(f"--fps must be >= 0, got {cfg.fps}")
    if cfg.scale < 0 or cfg.frames < 0 or cfg.threads < 0:
        raise UsageError("--scale, --frames and --threads must be >= 0")
    DecodeConfig(cfg.decode, cfg.temperature, cfg.confident)  # raises one line naming the flag
    if cfg.mode == "record" and not cfg.out.endswith(".npz"):
        raise UsageError(f"--out {cfg.out}: the dataset format is .npz")
    if cfg.video and not cfg.video.lower().endswith((".gif", ".mp4")):
        raise UsageError(f"--video {cfg.video}: use a .gif or .mp4 file name")
    return cfg


def run_game(cfg: PlayConfig) -> int:
    """Open the window (or the headless loop) in `cfg.mode` and run until closed or `--frames`."""
    cfg = _check(cfg)
    # OpenMP threads that spin after each kernel take the core the UI and the emulator need: on the
    # 2-core CPU the dream step's p50 was 42 ms with ACTIVE, 26-29 ms with PASSIVE (95 vs 0-1 dropped
    # frames in 500). Read once when torch loads, so set it before; the user's setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # errors should be the only line printed
    # On 2 cores the step's two torch threads fight the UI thread and the emulator: in the headless game
    # (lite2, AVX2, fp32, 1000 frames) 2 threads gave a step p50/p99 of 29/45-49 ms and 4-6 dropped frames,
    # 1 thread 30/39 ms and 1 dropped. A batch-1 step gains little from a second thread once it has to share.
    if cfg.threads or "OMP_NUM_THREADS" not in os.environ:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(cfg.threads or max(1, cores - 1))
    if cfg.mode in ("dream", "compare"):  # a missing checkpoint is a clear error before any window opens
        from neuroplay.app.catalog import resolve_checkpoint

        resolve_checkpoint(cfg.checkpoint)
    from neuroplay.app.main import App

    return App(cfg).run()


def _add(sub: argparse._SubParsersAction, name: str, help_: str, skip: tuple[str, ...],
         positional: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    add_dataclass_args(p, PlayConfig, positional=positional, skip=skip)
    return p


def add_play_parser(sub: argparse._SubParsersAction) -> None:
    _add(sub, "play", "play Breakout dreamed by the world model (or --mode real/compare/record/replay/menu)", ())


def run_play(args: argparse.Namespace) -> int:
    return run_game(build(PlayConfig, args))


def add_record_parser(sub: argparse._SubParsersAction) -> None:
    _add(sub, "record", "play the real game; every episode is appended to --out (source=human)",
         ("mode", "file", "decode", "temperature", "confident"))


def run_record(args: argparse.Namespace) -> int:
    return run_game(replace(build(PlayConfig, args), mode="record"))


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    _add(sub, "compare", "real game and dream side by side, same keys; token accuracy, PSNR, difference map",
         ("mode", "file", "out"))


def run_compare(args: argparse.Namespace) -> int:
    return run_game(replace(build(PlayConfig, args), mode="compare"))


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    _add(sub, "replay", "step through a recorded or collected episode file; B branches the dream from a frame",
         ("mode", "out"), positional=("file",))


def run_replay(args: argparse.Namespace) -> int:
    return run_game(replace(build(PlayConfig, args), mode="replay"))
