"""Human play recorded in the project's dataset format, with nothing a person played ever lost.

Each finished episode is appended to the file the moment it ends: read what is there, add the
episode, write it back atomically (`Episodes.save`: temp file + fsync + rename), so the file on disk is
always a complete, valid dataset and a crash loses at most the episode under way. `close()` keeps that
episode too (its last `done` stays False: a truncated episode, as `neuroplay collect` writes them).
A failed write (full disk, read-only folder) leaves the previous file intact, keeps the episode in
memory, says so in `message`, and is retried at the next episode end and at close.
`write_behind=True` (the paced game) does those writes on a writer thread: rewriting a 20k-frame file
takes ~4 s here, which would otherwise freeze the game at every game over; `close()` waits for it.
Per-episode emulator seeds go in `meta["episode_seeds"]` so a recording replays bit for bit.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from neuroplay import __version__
from neuroplay.data.collect import PREPROCESSING
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.errors import UsageError

SOURCE = "human"
ASSISTED = "human+autopilot"
"""Source of an episode in which the autopilot played some steps (not weighted as expert play)."""


class Recorder:
    """Collects (frame, action, reward, done) of the real game and appends episodes to `path`."""

    def __init__(self, path: str | Path, source: str = SOURCE, write_behind: bool = False) -> None:
        self.path = Path(path)
        if self.path.suffix != ".npz":
            raise UsageError(f"--out {self.path}: the dataset format is .npz")
        try:  # refuse before anything is played, not at the first game over
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out {self.path}: cannot create its folder ({e.strerror or e})") from e
        if not os.access(self.path.parent, os.W_OK):
            raise UsageError(f"--out {self.path}: its folder is not writable")
        self.source = source
        self.frames: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.seed = 0
        self.assisted = False
        self.unsaved: list[tuple[Episodes, int]] = []
        """Finished episodes whose write failed (retried later), with their seeds."""
        self.saved_episodes = 0
        self.saved_frames = 0
        self.message = ""
        """Last problem, for the screen ('' when all is well)."""
        self._lock = threading.Lock()  # `unsaved` and the counters, shared with the writer thread
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="recorder") if write_behind else None
        self._last_write: Future[bool] | None = None

    # ------------------------------------------------------------------ state for the HUD
    @property
    def episode_frames(self) -> int:
        """Transitions of the episode under way."""
        return len(self.actions)

    @property
    def episodes(self) -> int:
        """Episodes finished this session (saved or waiting to be)."""
        with self._lock:
            return self.saved_episodes + len(self.unsaved)

    # ------------------------------------------------------------------ recording
    def start(self, frame: np.ndarray, seed: int = 0) -> None:
        """Begin an episode at the emulator's reset frame (`seed`: the emulator's, for replay)."""
        self.frames, self.actions, self.rewards, self.dones = [np.array(frame, np.uint8)], [], [], []
        self.seed, self.assisted = int(seed), False

    def add(self, action: int, frame: np.ndarray, reward: float, done: bool, assisted: bool = False) -> bool:
        """Record one transition (`assisted`: the autopilot chose it); on `done` the episode is written.
        Returns True if it was saved."""
        if not self.frames:
            raise RuntimeError("Recorder.add before start()")
        self.assisted = self.assisted or assisted
        self.actions.append(int(action))
        self.frames.append(np.array(frame, np.uint8))
        self.rewards.append(float(reward))
        self.dones.append(bool(done))
        if done:
            return self.finish_episode()
        return False

    def finish_episode(self) -> bool:
        """Queue the episode under way (if it has any transition) and write everything pending; with
        write-behind the write is started and False returned (`saved_episodes` counts it when done)."""
        if self.actions:
            with self._lock:
                self.unsaved.append((self._episode(), self.seed))
        self.frames, self.actions, self.rewards, self.dones = self.frames[-1:], [], [], []
        self.assisted = False
        if self._writer is not None:
            self._last_write = self._writer.submit(self.flush)
            return False
        return self.flush()

    def wait(self) -> None:
        """Until the writes started so far are done (one writer: the last one finishing means all did)."""
        if self._last_write is not None:
            self._last_write.result()

    def close(self) -> bool:
        """Keep the episode under way and write all pending episodes (Esc, window close, Ctrl-C).

        If the file still cannot be written (e.g. it was corrupted by something else, or its folder went
        away), the pending episodes go to a rescue file beside it, else in the working or temp folder."""
        self.wait()
        writer, self._writer = self._writer, None  # from here on, writes happen now, in this thread
        ok = self.finish_episode()
        if writer is not None:
            writer.shutdown()
        self.frames = []
        if ok or not self.unsaved:
            return ok
        pending = Episodes.concat([e for e, _ in self.unsaved], meta={
            "episode_seeds": [s for _, s in self.unsaved], "rescued_for": str(self.path)})
        name = f"{self.path.stem}.rescue-{time.strftime('%Y%m%d-%H%M%S')}.npz"
        for folder in (self.path.parent, Path.cwd(), Path(tempfile.gettempdir())):
            try:
                rescue = pending.save(folder / name)
            except DatasetError:
                continue
            self.message = f"{self.path} could not be written; this session's episodes are in {rescue}"
            self.saved_episodes += len(self.unsaved)
            self.unsaved = []
            break
        return False

    def flush(self) -> bool:
        """Append pending episodes to the file atomically; on failure keep them and set `message`."""
        with self._lock:
            batch = list(self.unsaved)
        if not batch:
            return True
        try:
            old = Episodes.load(self.path) if self.path.exists() else None
            meta = self._meta(old, [seed for _, seed in batch])
            Episodes.concat(([old] if old is not None else []) + [e for e, _ in batch], meta=meta).save(self.path)
        except DatasetError as e:
            n = len(batch)
            self.message = f"NOT SAVED ({n} episode{'s' * (n > 1)} kept in memory, retried): {e}"
            return False
        with self._lock:  # episodes queued while this write ran stay for the next one
            del self.unsaved[: len(batch)]
            self.saved_episodes += len(batch)
            self.saved_frames += sum(e.n_transitions for e, _ in batch)
        self.message = ""
        return True

    # ------------------------------------------------------------------ helpers
    def _episode(self) -> Episodes:
        n = len(self.actions)
        return Episodes(
            frames=np.stack(self.frames[: n + 1]), tokens=None, actions=np.asarray(self.actions, np.uint8),
            rewards=np.asarray(self.rewards, np.float32), dones=np.asarray(self.dones, bool),
            episode_lengths=np.asarray([n], np.int64), sources=[ASSISTED if self.assisted else self.source], meta={},
        )

    def _meta(self, old: Episodes | None, new_seeds: list[int]) -> dict[str, Any]:
        """The file's meta: the old one kept, per-episode seeds extended (None where unknown)."""
        meta: dict[str, Any] = dict(old.meta) if old is not None else {
            "game": "ALE/Breakout-v5", "actions": ["NOOP", "FIRE", "RIGHT", "LEFT"],
            "preprocessing": PREPROCESSING, "collector": "neuroplay record", "neuroplay_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        meta.pop("format_version", None)
        seeds = list(meta.get("episode_seeds", []))
        n_old = old.n_episodes if old is not None else 0
        seeds = (seeds + [None] * n_old)[:n_old] + list(new_seeds)
        meta["episode_seeds"] = seeds
        return meta
