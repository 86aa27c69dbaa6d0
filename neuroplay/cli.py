"""The `neuroplay` command: one entry point, one subcommand per job.

Each subcommand's module registers its own parser (`add_*_parser`) and runner (`run_*`), so this file
only wires them and turns the project's error types into one clear line and an exit status:
2 for bad input (a file, flag or checkpoint), 130 for Ctrl-C (after the command saved its work).
pygame is imported only by the game's own subcommands, when they run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

# (subcommand, module, parser adder, runner): modules are imported lazily where possible.
COMMANDS: list[tuple[str, str, str, str]] = [
    ("play", "neuroplay.play_cli", "add_play_parser", "run_play"),
    ("record", "neuroplay.play_cli", "add_record_parser", "run_record"),
    ("compare", "neuroplay.play_cli", "add_compare_parser", "run_compare"),
    ("replay", "neuroplay.play_cli", "add_replay_parser", "run_replay"),
    ("collect", "neuroplay.data.cli", "add_collect_parser", "run_collect"),
    ("data", "neuroplay.data.cli", "add_data_parser", "run_data"),
    ("train", "training.cli", "add_train_parser", "run_train"),
    ("eval", "neuroplay.evaluation.cli", "add_eval_parser", "run_eval"),
    ("analyze", "neuroplay.evaluation.cli", "add_analyze_parser", "run_analyze"),
    ("bench", "neuroplay.bench", "add_bench_parser", "run_bench"),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (`only`) one with just that subcommand: `neuroplay data info` need not
    import torch or pygame to parse its flags."""
    from neuroplay import __version__

    parser = argparse.ArgumentParser(
        prog="neuroplay",
        description="Play Atari Breakout dreamed by a learned world model; collect data, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"neuroplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, adder, _ in COMMANDS:
        if only is not None and name != only:
            continue
        getattr(importlib.import_module(module), adder)(sub)
        assert name in sub.choices, f"{module}.{adder} did not register {name}"
    return parser


def runner_for(command: str) -> Callable[[argparse.Namespace], int]:
    for name, module, _, runner in COMMANDS:
        if name == command:
            return getattr(importlib.import_module(module), runner)
    raise KeyError(command)


def error_types() -> tuple[type[BaseException], ...]:
    """The project's own errors (bad input, a missing prerequisite, a clean stop): one line, no traceback.
    Anything else, a torch shape error included, is a bug and keeps its traceback."""
    from neuroplay.errors import NeuroplayError

    return (NeuroplayError,)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def install_stop_signals() -> None:
    """SIGTERM (and SIGINT, which a shell ignores in background jobs) stop a command like Ctrl-C does,
    so `kill PID` on a training or collection run saves its work before exiting."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {name for name, *_ in COMMANDS}
    parser = build_parser(first if first in known else None)
    args = parser.parse_args(argv)
    install_stop_signals()
    try:
        return int(runner_for(args.command)(args) or 0)
    except KeyboardInterrupt:
        print("neuroplay: interrupted", file=sys.stderr)
        return 130
    except error_types() as e:
        if os.environ.get("NEUROPLAY_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        print(f"neuroplay: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        if os.environ.get("NEUROPLAY_DEBUG"):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"neuroplay: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except ImportError as e:  # a dependency missing or broken: say which, and how to get it back
        if os.environ.get("NEUROPLAY_DEBUG"):
            raise
        print(f"neuroplay: error: {e}; reinstall the package's dependencies (pip install neuroplay)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
