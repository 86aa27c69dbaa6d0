"""The menu's Train screen: pick a job and preset, run it as a subprocess, watch it, cancel it, play it.

Its first job does something useful on any install: it continues the shipped pair on the player's recordings
when there are some, else trains the shipped preset from scratch, collecting data first when there is none.

All process handling is in `neuroplay.trainjob` (no pygame); this screen only offers the choices,
draws the progress (step, loss, ETA, log tail) and turns keys into start / cancel / play.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pygame

from neuroplay.app import draw
from neuroplay.app.catalog import find_datasets
from neuroplay.app.widgets import Row, RowsScreen, cycle_index
from neuroplay.config import TOKENS_FILE
from neuroplay.trainjob import PRESETS, STAGES, TrainJob, TrainSpec

STEP_CHOICES = [0, 100, 1000, 5000, 20000]
"""0: the stage's default."""


class TrainScreen:
    """Setup rows while idle; a progress view while a job runs or after it ended."""

    def __init__(self, datasets: list[str], on_back: Callable[[], None],
                 on_play: Callable[[Path], None], device: Callable[[], str], cwd: str | Path | None = None) -> None:
        self.spec = TrainSpec(stage="all", device="auto")
        self.extra_datasets = datasets
        self.on_back, self.on_play, self.device, self.cwd = on_back, on_play, device, cwd
        self.job: TrainJob | None = None
        self.run_choice = "new"
        self.notice = ""
        self.rows = RowsScreen("Train a model", [
            Row("stage", lambda: self.spec.stage, lambda d: self._set("stage", STAGES, d)),
            Row("preset", self._preset_label, lambda d: self._set("preset", PRESETS, d)),
            Row("data", self._data_label, self._cycle_data),
            Row("steps", lambda: str(self.spec.steps or "default"), lambda d: self._set("steps", STEP_CHOICES, d)),
            Row("run folder", lambda: self.run_choice, self._cycle_run),
            Row("Start", enter=self.start),
            Row("Back", enter=on_back),
        ], ["Up/Down choose, Left/Right change, Enter start.", "While training: C cancels (it saves), "
            "Esc goes back to the menu (training goes on)."])
        recordings = [p for p in self.datasets() if p.parent.name == "recordings"]
        if recordings:  # the player's own play: continue the shipped pair on it
            self.spec.stage, self.spec.data = "continue", str(recordings[0])
        else:  # train from scratch on collected data, or collect first
            datasets_now = self.datasets()
            self.spec.data = str(datasets_now[0]) if datasets_now else ""

    # ------------------------------------------------------------------ choices
    def datasets(self) -> list[Path]:
        return find_datasets(list(self.extra_datasets))

    def _preset_label(self) -> str:
        return "the shipped pair's" if self.spec.stage == "continue" else self.spec.preset

    def _data_label(self) -> str:
        if self.spec.stage == "collect":
            return f"new file, {self.spec.frames} frames"
        if self.spec.stage == "wm":
            return f"<run folder>/{TOKENS_FILE}"
        if self.spec.stage == "all" and not self.spec.data:
            return f"none: collect {self.spec.frames} frames first"
        return self.spec.data or "none found: record or collect first"

    def _cycle_data(self, d: int) -> None:
        if self.spec.stage == "collect":
            self.spec.frames = [5_000, 20_000, 100_000, 200_000][cycle_index([5_000, 20_000, 100_000, 200_000],
                                                                               self.spec.frames, d)]
            return
        options = [str(p) for p in self.datasets()]
        if self.spec.stage == "all":
            options = ["", *options]  # "": collect first
        if options:
            self.spec.data = options[cycle_index(options, self.spec.data, d)]

    def _cycle_run(self, d: int) -> None:
        runs = Path(self.cwd or ".") / "runs"
        options = ["new"] + (sorted(str(p.relative_to(Path(self.cwd or "."))) for p in runs.iterdir() if p.is_dir())
                             if runs.is_dir() else [])
        self.run_choice = options[cycle_index(options, self.run_choice, d)]

    def _set(self, name: str, options: tuple | list, d: int) -> None:
        setattr(self.spec, name, list(options)[cycle_index(list(options), getattr(self.spec, name), d)])

    # ------------------------------------------------------------------ job
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.state == "running"

    def start(self) -> None:
        self.spec.device = self.device()
        self.spec.run_dir = "" if self.run_choice == "new" else self.run_choice
        if self.spec.stage != "collect" and not self.spec.run_dir:
            self.spec.run_dir = f"runs/game-{time.strftime('%Y%m%d-%H%M%S')}"
        spec = self.spec
        if spec.stage == "collect":  # always a new file: the data row may point at a person's recordings
            spec = replace(spec, data=f"data/collected-{time.strftime('%Y%m%d-%H%M%S')}.npz")
        try:
            self.job = TrainJob.from_spec(spec, cwd=self.cwd).start()
            self.notice = ""
        except (ValueError, OSError) as e:
            self.notice = f"cannot start: {e}"

    def cancel(self) -> None:
        """SIGINT in a helper thread: the trainer saves first, and the window must not freeze meanwhile."""
        if self.running and self.job is not None:
            threading.Thread(target=self.job.cancel, daemon=True).start()

    def shutdown(self) -> None:
        """On quit: a running trainer is cancelled (it saves) and waited for."""
        if self.job is not None and self.job.state == "running":
            self.job.cancel()

    # ------------------------------------------------------------------ events and drawing
    def handle(self, e: pygame.event.Event) -> None:
        if self.job is None:
            if e.type == pygame.KEYDOWN and e.key == pygame.K_ESCAPE:
                self.on_back()
            else:
                self.rows.handle(e)
            return
        if e.type != pygame.KEYDOWN:
            return
        state = self.job.state
        if e.key == pygame.K_c and state == "running":
            self.cancel()
        elif e.key == pygame.K_ESCAPE:
            if state != "running":
                self.job = None
            self.on_back()
        elif e.key in (pygame.K_RETURN, pygame.K_KP_ENTER) and state != "running":
            ckpt = self.job.checkpoint()
            self.job = None
            if ckpt is not None:
                self.on_play(ckpt)
        elif e.key == pygame.K_n and state != "running":
            self.job = None

    def draw(self, surf: pygame.Surface, f: dict[str, pygame.font.Font]) -> None:
        if self.job is None:
            self.rows.draw(surf, f, self.notice)
            return
        job, p = self.job, self.job.progress
        surf.fill(draw.BG)
        state = job.state
        draw.text(surf, f["l"], f"Training: {self.spec.stage} ({self.spec.preset}) - {state}", (30, 20), draw.ACCENT)
        y = 80
        draw.draw_progress(surf, pygame.Rect(30, y, surf.get_width() - 60, 18), p.fraction)
        y += 30
        info = f"{p.stage or '...'} step {p.step}/{p.total or '?'}   ETA {p.eta or '?'}   {p.rate}"
        draw.text(surf, f["m"], info, (30, y))
        y += 28
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
        draw.text(surf, f["m"], metrics or "waiting for the first numbers...", (30, y), draw.GREEN)
        y += 36
        for line in job.lines(14):
            draw.text(surf, f["s"], line[:140], (30, y), draw.DIM)
            y += 18
        ckpt = job.checkpoint() if state != "running" else None
        hint = ("C: cancel (saves)   Esc: menu (keeps training)" if state == "running" else
                f"Enter: play the new checkpoint {ckpt}   N: new job   Esc: menu" if ckpt else
                f"exit code {job.returncode}   N: new job   Esc: menu")
        draw.text(surf, f["m"], hint, (30, surf.get_height() - 40), draw.ACCENT)
