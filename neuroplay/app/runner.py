"""Stepping the session off the UI thread, and the frame statistics of `--stats` (no pygame here).

Why a thread: with the `spec` model on a CPU one dream step takes longer than the 67 ms frame budget.
The window must still read input, redraw and answer the OS every frame, so the step runs on a worker
and the UI shows the newest finished frame; a tick without a new frame is a *dropped frame* and the
game simply runs slower (the HUD says so). After each step the worker also runs the dream's
action-independent pass (`Session.idle`) while the player decides the next key. The UI waits only for
the step (`pending`), not for that pass: the frame is shown as soon as it exists, and the next key may
be submitted while the pass still runs (it is queued behind it).
PyTorch releases the GIL inside its kernels, so the UI thread stays responsive during inference.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from neuroplay.session import Keys, Session, View

Command = tuple[Any, ...]
"""(name, *args) of a `Session.command`."""


class Stepper:
    """Runs `Session.step` (and queued commands) on one worker thread, or inline (`threaded=False`)."""

    def __init__(self, session: Session, threaded: bool = True) -> None:
        self.session = session
        self.threaded = threaded
        self._latest: View = session.view()
        self._new = False
        self._ready = threading.Event()  # cleared from submit until the step has published its view
        self._ready.set()
        self._active = 0  # submitted jobs not finished (step and idle pass)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[Keys | None, list[Command]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        session.idle()  # the first frame pass now, before the clock runs, not inside the first frame
        if threaded:
            self._thread = threading.Thread(target=self._work, name="neuroplay-step", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> bool:
        """The last submitted frame is not ready yet (what the UI waits for and counts as dropped)."""
        return not self._ready.is_set()

    def wait_frame(self, timeout: float) -> bool:
        """Block until the submitted frame is ready or `timeout` seconds pass; True if it is ready."""
        return self._ready.wait(max(0.0, timeout))

    @property
    def busy(self) -> bool:
        """The worker still has work, including the action-independent pass after a step."""
        return self._active > 0

    def submit(self, keys: Keys | None, commands: list[Command] | None = None) -> bool:
        """Start the next frame (commands first); False if the previous frame is not ready yet."""
        with self._lock:
            if not self._ready.is_set():
                return False
            self._ready.clear()
            self._active += 1
        job = (keys, list(commands or []))
        if self.threaded:
            self._jobs.put(job)
        else:
            self._run(*job)
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._run(*job)

    def _run(self, keys: Keys | None, commands: list[Command]) -> None:
        try:
            try:
                for name, *args in commands:
                    self.session.command(name, *args)
                view = self.session.step(keys)
                with self._lock:
                    self._latest, self._new = view, self._new or view.stepped or bool(commands)
            finally:
                self._ready.set()
            if self._jobs.empty():  # a queued key goes first; its step prepares the next pass itself
                self.session.idle()
        except BaseException as e:  # noqa: BLE001 - handed to the UI thread, which re-raises it
            self._error = e
        finally:
            with self._lock:
                self._active -= 1

    def poll(self) -> tuple[View, bool]:
        """The newest view and whether it is new since the last poll; re-raises a worker error."""
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        with self._lock:
            new, self._new = self._new, False
            return self._latest, new

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the worker is idle (before closing or switching sessions)."""
        t0 = time.perf_counter()
        while self.busy and time.perf_counter() - t0 < timeout:
            time.sleep(0.002)

    def close(self) -> None:
        """Stop the worker after the job under way; the session itself is closed by the caller."""
        self.wait()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(5)
            self._thread = None


class FrameStats:
    """Per-tick timing of the UI loop: what `--stats OUT.json` reports."""

    def __init__(self, target_fps: float) -> None:
        self.target_fps = target_fps
        self.t0: float | None = None
        self.last_frame: float | None = None
        self.frame_ms: list[float] = []
        self.model_ms: list[float] = []
        self.ticks = self.frames = self.dropped = 0
        self.dropped_at: list[int] = []  # tick numbers of the first dropped frames (where to look)
        self.rss_mb: list[float] = []
        """Resident memory every `RSS_EVERY` frames, from the first: a long soak shows a leak as a slope."""

    def tick(self, new_frame: bool, waiting: bool, model_ms: float = 0.0) -> None:
        """One UI tick: `new_frame` if a game frame was shown, `waiting` if the model was still busy."""
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        self.ticks += 1
        if new_frame:
            if self.last_frame is not None:
                self.frame_ms.append((now - self.last_frame) * 1e3)
            self.last_frame = now
            self.frames += 1
            if (self.frames - 1) % RSS_EVERY == 0:
                self.rss_mb.append(resident_mb())
            if model_ms > 0:
                self.model_ms.append(model_ms)
        elif waiting:
            self.dropped += 1
            if len(self.dropped_at) < 20:
                self.dropped_at.append(self.ticks - 1)

    def summary(self) -> dict[str, Any]:
        span = (self.last_frame - self.t0) if self.t0 is not None and self.last_frame is not None else 0.0

        def pct(xs: list[float]) -> dict[str, float]:
            if not xs:
                return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
            a = np.asarray(xs)
            return {"mean": round(float(a.mean()), 2),
                    **{f"p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)}}

        return {
            "target_fps": self.target_fps, "ticks": self.ticks, "frames": self.frames,
            "sustained_fps": round((self.frames - 1) / span, 2) if span > 0 else 0.0,
            "frame_time_ms": pct(self.frame_ms), "model_step_ms": pct(self.model_ms),
            "dropped_frames": self.dropped, "dropped_at_ticks": self.dropped_at,
            "rss_mb": [round(m, 1) for m in self.rss_mb], "rss_growth": rss_growth(self.rss_mb),
        }


RSS_EVERY = 450
"""Frames between resident-memory samples (30 s at 15 FPS)."""


def resident_mb() -> float:
    """This process's resident memory in MiB (Linux: /proc; elsewhere the peak, from `resource`)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def rss_growth(samples: list[float]) -> float | None:
    """Relative growth of resident memory from the warmed-up baseline to the largest sample after it.

    The baseline is the sample at `RSS_WARM` (5 min) when the run lasts at least twice that, else the second
    sample: the first minutes hold the allocator's and the model's start-up, which is not a leak."""
    if len(samples) < 3:
        return None
    base = RSS_WARM if len(samples) > 2 * RSS_WARM else 1
    return round(max(samples[base:]) / samples[base] - 1, 4)


RSS_WARM = 10
"""Index of the resident-memory sample that a long soak measures its growth from (5 min at `RSS_EVERY`)."""


class SessionLoader:
    """Builds a session and its Stepper off the UI thread, so the window keeps drawing and answering while
    a model loads (a `--compile` warm-up takes 10-25 s on a CPU); Esc can abandon it."""

    def __init__(self, mode: str, build: Callable[[], Session], threaded: bool) -> None:
        self.mode, self.started = mode, time.perf_counter()
        self.result: tuple[Session, Stepper] | None = None
        self.error: BaseException | None = None
        self._build, self._threaded = build, threaded
        self._thread = threading.Thread(target=self._run, name="session-loader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            session = self._build()
            self.result = (session, Stepper(session, threaded=self._threaded))
        except Exception as e:  # noqa: BLE001 - shown to the user as one line by the caller
            self.error = e

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> None:
        self._thread.join()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def discard(self) -> None:
        """Abandoned (Esc, quit): wait for the build, then close what it made."""
        self._thread.join()
        if self.result is not None:
            session, stepper = self.result
            stepper.close()
            session.close()
            self.result = None
