"""Training launched from the game's menu: a subprocess, its progress parsed from its output, clean cancel.

The trainer runs as `python -m training.cli <stage> ...` (or `python -m neuroplay.cli collect ...`) in
its own process, so a crash or a slow step never freezes the window and the same code paths as the
command line are used. Progress comes from what the trainers already print: tqdm bars on stderr
(`wm:  12%|#2  | 24/200 [00:03<00:25, 7.0it/s, loss=0.51, acc=0.83]`) and eval lines
(`wm step 200: val_loss 0.4, val_acc 0.9`). Cancel sends SIGINT: the trainers catch Ctrl-C, save a
resumable checkpoint and exit, which is exactly what a person pressing Ctrl-C in a terminal gets.
No pygame here: the app draws `TrainJob.progress` and `TrainJob.tail`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from neuroplay import config
from neuroplay.config import SHIPPED_PRESET, TOKENS_FILE
from neuroplay.errors import UsageError

STAGES = ("all", "continue", "collect", "vqvae", "tokenize", "wm")
"""What the Train screen can run: `all` trains the shipped preset from scratch (collecting first when no data is
chosen), `continue` fine-tunes the shipped pair on a recording, the rest are single stages."""
PRESETS = (SHIPPED_PRESET, *(p for p in config.PRESETS if p != SHIPPED_PRESET))
"""The presets the Train screen offers, the shipped one first."""

_BAR = re.compile(
    r"(?:(?P<desc>[\w-]+):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)(?P<rest>[^\]]*)\]")
_EVAL = re.compile(r"^(?P<stage>[\w-]+) step (?P<step>\d+): (?P<metrics>.+)$")
_KV = re.compile(r"(?P<k>[A-Za-z_][\w]*)[ =](?P<v>-?[\d.]+(?:e-?\d+)?)")


@dataclass
class TrainSpec:
    """What the menu's train screen asks for."""

    stage: str
    """One of `STAGES`."""
    preset: str = SHIPPED_PRESET
    """Model preset (`continue` takes the pair's own)."""
    data: str = ""
    """Episode file to train on (collect: the file to write; all: none means collect `frames` first)."""
    run_dir: str = ""
    """Run folder (default: runs/game-<time>)."""
    frames: int = 20_000
    """collect: transitions to collect."""
    steps: int = 0
    """Optimizer steps (0: the stage's default); `all` applies it to both models."""
    device: str = "auto"
    extra: list[str] = field(default_factory=list)
    """More flags passed through."""


def commands(spec: TrainSpec) -> list[list[str]]:
    """The argvs that run `spec` one after another with this Python (`sys.executable`): one, or for `all`
    without data, a collection and then the training on what it collected."""
    if spec.stage == "all" and not spec.data:
        data = f"data/collected-{time.strftime('%Y%m%d-%H%M%S')}.npz"
        collect = replace(spec, stage="collect", data=data)
        return [command(collect), command(replace(spec, data=data))]
    return [command(spec)]


def command(spec: TrainSpec) -> list[str]:
    """The argv that runs `spec` with this Python (`sys.executable`)."""
    if spec.stage not in STAGES:
        raise UsageError(f"unknown stage {spec.stage!r}; choose one of {', '.join(STAGES)}")
    py = [sys.executable, "-u"]
    if spec.stage == "collect":
        out = spec.data or f"data/collected-{time.strftime('%Y%m%d-%H%M%S')}.npz"
        return [*py, "-m", "neuroplay.cli", "collect", "--frames", str(spec.frames), "--out", out, *spec.extra]
    if not spec.data and spec.stage not in ("wm", "all"):
        raise UsageError(f"{spec.stage}: choose an episode file to train on (record or collect one first)")
    run = spec.run_dir or f"runs/game-{time.strftime('%Y%m%d-%H%M%S')}"
    argv = [*py, "-m", "training.cli", spec.stage, "--run-dir", run, "--device", spec.device]
    if spec.stage == "wm":  # the world model trains on the run's token file (from `tokenize`)
        argv += ["--data", str(Path(run) / TOKENS_FILE)]
    else:
        argv += ["--data", spec.data]
    if spec.stage not in ("tokenize", "continue"):
        argv += ["--preset", spec.preset]
    if spec.steps > 0:
        argv += ["--vq-steps", str(spec.steps), "--wm-steps", str(spec.steps)] if spec.stage == "all" else \
            ["--steps", str(spec.steps)] if spec.stage in ("vqvae", "wm", "continue") else []
    return argv + list(spec.extra)


def check_inputs(spec: TrainSpec, cwd: str | Path | None = None) -> None:
    """Refuse, in one line, a job that would fail at once or destroy data: a collect onto an existing file
    (it may be a person's recordings), tokenize without the run's VQ-VAE, wm without the run's tokens."""
    base = Path(cwd or ".")
    run = base / spec.run_dir if spec.run_dir else None
    if spec.stage == "collect" and spec.data and (base / spec.data).exists():
        raise UsageError(f"collect: {spec.data} already exists; it is not overwritten")
    if spec.stage == "tokenize" and (run is None or not (run / "vqvae" / "model.safetensors").is_file()):
        raise UsageError(f"tokenize: {spec.run_dir or 'a new run folder'} has no vqvae/ yet: "
                         "pick a run folder with a trained VQ-VAE, or the stage 'all'")
    if spec.stage == "wm" and (run is None or not (run / TOKENS_FILE).is_file()):
        raise UsageError(f"wm: {spec.run_dir or 'a new run folder'} has no {TOKENS_FILE} yet: "
                         "pick a run folder where tokenize has run, or the stage 'all'")


def _num(s: str) -> float:
    mult = {"k": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:], 1.0)
    return float(s[:-1] if mult != 1.0 else s) * mult


@dataclass
class Progress:
    """The latest numbers read from the trainer's output."""

    stage: str = ""
    step: int = 0
    total: int = 0
    eta: str = ""
    rate: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    """Latest loss-like values (train `loss`, `acc`; eval `val_loss`, ...)."""

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


def parse_line(line: str, p: Progress) -> bool:
    """Update `p` from one line of output; True if the line was a progress bar (not worth a log line)."""
    m = _BAR.search(line)
    if m:
        p.stage = m["desc"] or p.stage
        p.step, p.total, p.eta = int(_num(m["n"])), int(_num(m["total"])), m["eta"]
        rest = m["rest"].strip(", ")
        parts = [x.strip() for x in rest.split(",") if x.strip()]
        if parts and "=" not in parts[0]:
            p.rate = parts[0]
        for kv in parts:
            if "=" in kv:
                k, v = kv.split("=", 1)
                try:
                    p.metrics[k.strip()] = float(v)
                except ValueError:
                    pass
        return True
    m = _EVAL.match(line.strip())
    if m:
        p.stage = m["stage"]
        p.step = max(p.step, int(m["step"]))
        for kv in _KV.finditer(m["metrics"]):
            p.metrics[kv["k"]] = float(kv["v"])
    return False


class TrainJob:
    """One training job, start, follow, cancel: one subprocess, or several run one after another (collect, then
    train), the next starting only when the one before succeeded."""

    def __init__(self, argv: list[str] | list[list[str]], run_dir: str | Path | None = None,
                 cwd: str | Path | None = None, tail: int = 200) -> None:
        self.argvs: list[list[str]] = [list(a) for a in argv] if argv and isinstance(argv[0], list) else [
            list(argv)]  # type: ignore[list-item]
        self.argv, self.cwd = self.argvs[-1], cwd
        self.run_dir = Path(run_dir) if run_dir else _flag(self.argv, "--run-dir")
        self.progress = Progress()
        self.tail: deque[str] = deque(maxlen=tail)
        self.bar = ""
        """The latest progress-bar line (bars overwrite themselves with \\r)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.started_at = 0.0
        """time.time() at start: checkpoints older than this are not this job's."""
        self._rc: int | None = None
        """The job's exit status once its last process has ended (or one failed)."""
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: TrainSpec, cwd: str | Path | None = None) -> TrainJob:
        """The job for `spec`; UsageError (one line) if it cannot work: see `check_inputs`."""
        check_inputs(spec, cwd)
        return cls(commands(spec), cwd=cwd)

    def start(self) -> TrainJob:
        self.started_at = time.time()
        self.proc = self._spawn(self.argvs[0])
        self._reader = threading.Thread(target=self._run, daemon=True)
        self._reader.start()
        return self

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        kw: dict = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.cwd, env=env, **kw)

    def _run(self) -> None:
        """The reader thread: follow each process in turn; the next starts only after a clean exit."""
        for i, argv in enumerate(self.argvs):
            if i > 0:
                with self._lock:
                    if self.cancelled:
                        break
                    self.proc = self._spawn(argv)
            assert self.proc is not None
            self._read(self.proc)
            rc = self.proc.wait()
            if rc != 0 or self.cancelled:
                break
        self._rc = self.proc.returncode if self.proc is not None else None

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        buf = b""
        while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                self._line(raw.decode("utf-8", "replace"))
        if buf:
            self._line(buf.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        m = _BAR.search(line)
        if m and (line[: m.start()].strip() or line[m.end() :].strip()):  # a bar glued to other output
            for part in (line[: m.start()], m.group(0), line[m.end() :]):
                self._line(part)
            return
        with self._lock:
            if parse_line(line, self.progress):
                self.bar = line.strip()
            else:
                self.tail.append(line.rstrip())

    @property
    def state(self) -> str:
        """'idle', 'running', 'done', 'failed' or 'cancelled'."""
        if self.proc is None:
            return "idle"
        rc = self._rc if self._reader is not None and not self._reader.is_alive() else None
        if rc is None:
            return "running"
        return "cancelled" if self.cancelled else "done" if rc == 0 else "failed"

    @property
    def returncode(self) -> int | None:
        return self._rc if self._reader is not None and not self._reader.is_alive() else None

    def lines(self, n: int = 12) -> list[str]:
        """The last `n` log lines (progress bars left out; the latest bar is `self.bar`)."""
        with self._lock:
            return list(self.tail)[-n:]

    def cancel(self, timeout: float = 30.0) -> int | None:
        """SIGINT (the trainer saves and exits), then terminate/kill if it does not stop in `timeout`; no later
        process of the job starts."""
        if self.state != "running":
            return self.returncode
        with self._lock:
            self.cancelled = True
            proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT if os.name == "posix" else signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._reader is not None:
            self._reader.join(10)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the whole job (every process of it); its exit status."""
        assert self._reader is not None
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise subprocess.TimeoutExpired(self.argv, timeout or 0)
        assert self._rc is not None
        return self._rc

    def checkpoint(self) -> Path | None:
        """The run folder if this job left a playable pair in it (`vqvae/` and a `wm/` written since the job
        started: an older world model beside a new VQ-VAE would dream in the wrong tokens), else None."""
        d = self.run_dir
        if d is None:
            return None
        d = Path(self.cwd or ".") / d if not d.is_absolute() else d
        ok = all((d / sub / "config.json").is_file() and (d / sub / "model.safetensors").is_file()
                 for sub in ("vqvae", "wm"))
        fresh = ok and (d / "wm" / "model.safetensors").stat().st_mtime >= self.started_at - 1.0
        return d if fresh else None


def _flag(argv: list[str], name: str) -> Path | None:
    return Path(argv[argv.index(name) + 1]) if name in argv[:-1] else None
