"""The real game on the probes' own states: recorded episodes replayed in ALE, so that a probe can ask the
emulator what it asks the dream.

A probe starts a dream from a recorded state and then acts (holds FIRE, lets the tracker play). The recording
holds only what the recorded player did, so until now the real figure beside the dream's came from other
actions (the flight probe) or from another start (the serve delay right after a lost ball).
Breakout in ALE (no sticky actions, no random no-ops) is deterministic from its reset, so an episode made by
`neuroplay collect` or `neuroplay play` replays frame for frame from its actions. `Replay` checks that it does,
frame by frame against the file, and keeps the emulator state of every frame of the episodes that replay; an
episode that does not (another preprocessing, a token file with no pixels) is left out and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuroplay.envs.breakout import detect
from neuroplay.envs.players import TrackerPolicy
from neuroplay.envs.real import RealEnv
from neuroplay.evaluation.frames import FIRE, NOOP, EvalData


class Replay:
    """Emulator states of the frames of `data`'s episodes, for those that replay exactly; built per episode on
    first use (about 6 ms and 8 KB a frame: `RealEnv.bookmark`). `Replay.of(data)` shares one per data object."""

    def __init__(self, data: EvalData) -> None:
        self.data = data
        self._env: RealEnv | None = None
        self._states: dict[int, list[Any] | None] = {}
        """episode -> emulator state at each frame (None: it does not replay)."""

    @property
    def env(self) -> RealEnv:
        """The one emulator (made on first use: a token file never needs it)."""
        if self._env is None:
            self._env = RealEnv(seed=0)
        return self._env

    @classmethod
    def of(cls, data: EvalData) -> Replay:
        if data.replay is None:
            data.replay = cls(data)
        return data.replay

    def _episode(self, e: int) -> list[Any] | None:
        if e in self._states:
            return self._states[e]
        states: list[Any] | None = None
        if self.data.kind == "frames":
            n = int(self.data.episode_lengths[e])
            rows = self.data.frame_offsets[e] + np.arange(n + 1)
            frames = self.data.images(rows)  # (n + 1, 84, 64, 3)
            acts = self.data.actions[self.data.transition_offsets[e] + np.arange(n)]
            env = self.env
            states = [None] * (n + 1)
            if np.array_equal(env.reset(), frames[0]):
                states[0] = env.bookmark()
                for t, a in enumerate(acts):
                    if not np.array_equal(env.step(int(a)).frame, frames[t + 1]):
                        states = None
                        break
                    states[t + 1] = env.bookmark()
            else:
                states = None
        self._states[e] = states
        return states

    def replays(self, samples: np.ndarray) -> np.ndarray:
        """(n,) bool: which (episode, t) samples have an exact emulator state."""
        return np.array([self._episode(int(e)) is not None for e, _ in samples], bool)

    def at(self, e: int, t: int) -> RealEnv:
        """The emulator at frame t of episode e (which must replay), ready to step."""
        states = self._episode(e)
        assert states is not None, f"episode {e} does not replay"
        self.env.go_to(states[t], self.data.images(self.data.frame_offsets[e : e + 1] + t)[0])
        return self.env


def fire_delays(replay: Replay, states: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The real game from each state under FIRE, then NOOP, for `steps` steps: the first step (0-based) that
    shows a ball, -1 for none; (n,) each. The same reading as the dream's FIRE probe."""
    out = np.full((2, len(states)), -1)
    for i, (e, t) in enumerate(states):
        for b, action in enumerate((FIRE, NOOP)):
            env = replay.at(int(e), int(t))
            for j in range(steps):
                if detect(env.step(action).frame).ball_visible:
                    out[b, i] = j
                    break
    return out[0], out[1]


def primed_trackers(seeds: np.ndarray, prev: np.ndarray) -> list[TrackerPolicy]:
    """The flight probe's players, one per state, in the dream and in the real game alike: a noiseless tracker
    seeded per state (`seeds` (n,)) that has seen the frame before the state (`prev` (n, 84, 64, 3)), so it
    knows which way the ball moves before its first action."""
    players = [TrackerPolicy(noise=0.0, seed=int(sd)) for sd in seeds]
    for p, f in zip(players, prev):
        p.act(f)
    return players


def tracker_flight(replay: Replay, states: np.ndarray, steps: int, seeds: np.ndarray, first: np.ndarray,
                   prev: np.ndarray) -> np.ndarray:
    """The real game from each state played by the tracker for `steps` steps, seeded and primed as the flight
    probe's dream tracker (`seeds` (n,); `prev` the frames before the states, `first` the states' frames):
    (n, steps) bool, a ball visible."""
    seen = np.zeros((len(states), steps), bool)
    for i, ((e, t), player) in enumerate(zip(states, primed_trackers(seeds, prev))):
        frame = first[i]
        env = replay.at(int(e), int(t))
        for j in range(steps):
            frame = env.step(player.act(frame)).frame
            seen[i, j] = detect(frame).ball_visible
    return seen
