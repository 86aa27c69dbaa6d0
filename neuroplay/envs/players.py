"""Scripted Breakout players that read pixels only, so each plays the real game and the dream alike.

The tracker collects data and drives the game's autopilot; the others play as people do, so the soak probe
(`evaluation/endless.py`) meets the dream under several kinds of player: a chaser that reacts late and slips,
sticky-random keys held 1-15 steps, and a player who leaves the ball unserved for a while.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from neuroplay.config import Action
from neuroplay.envs.breakout import PLAY_COLS, Objects, detect


class Player(Protocol):
    """What the autopilot and the probes drive: a fresh game resets it, every frame asks it for an action."""

    def reset(self) -> None: ...

    def act(self, frame: np.ndarray) -> int: ...


class TrackerPolicy:
    """A scripted player that moves the paddle under the ball, with noise so the data stays varied.

    `noise` is the chance of a uniformly random action each step; each episode also draws a small
    aiming offset, so the ball hits different parts of the paddle and bounces at different angles.
    With low noise it clears much of the wall and reaches the fast late-game ball that random play
    never sees.
    """

    NOOP, FIRE, RIGHT, LEFT = Action.NOOP, Action.FIRE, Action.RIGHT, Action.LEFT

    def __init__(self, noise: float = 0.1, seed: int = 0, dead_zone: float = 1.5) -> None:
        self.noise, self.dead_zone = noise, dead_zone
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.offset = float(self.rng.uniform(-1.5, 1.5))
        self.prev: Objects | None = None

    def act(self, frame: np.ndarray) -> int:
        obj = detect(frame)
        prev, self.prev = self.prev, obj
        if self.rng.random() < self.noise:
            return int(self.rng.integers(4))
        if not obj.ball_visible:
            return int(self.FIRE if self.rng.random() < 0.5 else self.NOOP)
        target = obj.ball_x
        if prev is not None and prev.ball_visible and obj.ball_y is not None and prev.ball_y is not None:
            vx, vy = obj.ball_x - prev.ball_x, obj.ball_y - prev.ball_y
            if vy > 0:  # falling: aim where it will cross the paddle row, folding at the walls
                steps = (76 - obj.ball_y) / max(vy, 0.5)
                target = _fold(obj.ball_x + vx * min(steps, 20), PLAY_COLS.start, PLAY_COLS.stop - 1)
        if obj.paddle_x is None:
            return int(self.NOOP)
        return _towards(target + self.offset, obj.paddle_x, self.dead_zone)


def _towards(target: float, paddle_x: float, dead_zone: float) -> int:
    """RIGHT or LEFT to bring the paddle to `target`, NOOP within `dead_zone` pixels of it."""
    d = target - paddle_x
    if abs(d) <= dead_zone:
        return int(Action.NOOP)
    return int(Action.RIGHT if d > 0 else Action.LEFT)


def _fold(x: float, lo: float, hi: float) -> float:
    """Reflect x into [lo, hi] as a ball bouncing off the side walls would be."""
    span = hi - lo
    y = (x - lo) % (2 * span)
    return lo + (y if y <= span else 2 * span - y)


class RandomPolicy:
    """Uniform random actions, or (`hold_max` > 1) each action held for a random 1..hold_max steps."""

    def __init__(self, seed: int = 0, hold_max: int = 1) -> None:
        self.rng, self.hold_max = np.random.default_rng(seed), hold_max
        self.left, self.action = 0, 0

    def reset(self) -> None:
        self.left = 0

    def act(self, frame: np.ndarray | None = None) -> int:
        if self.left <= 0:
            self.action = int(self.rng.integers(4))
            self.left = int(self.rng.integers(1, self.hold_max + 1))
        self.left -= 1
        return self.action


class ChasePolicy:
    """Keeps the paddle under the ball where it is now (no aiming ahead), FIRE half the time when none shows.

    `lag` > 0 reacts to the frame 0..lag steps old (a person's reaction time, drawn each step); `noise` is the
    chance of a random key (a slip of the finger).
    """

    def __init__(self, seed: int = 0, noise: float = 0.0, lag: int = 0, dead_zone: float = 1.5) -> None:
        self.rng, self.noise, self.lag, self.dead_zone = np.random.default_rng(seed), noise, lag, dead_zone
        self.seen: deque[Objects] = deque(maxlen=lag + 1)

    def reset(self) -> None:
        self.seen.clear()

    def act(self, frame: np.ndarray) -> int:
        self.seen.append(detect(frame))
        if self.rng.random() < self.noise:
            return int(self.rng.integers(4))
        obj = self.seen[-1 - int(self.rng.integers(len(self.seen)))] if self.lag else self.seen[-1]
        if not obj.ball_visible or obj.ball_x is None:
            return int(Action.FIRE if self.rng.random() < 0.5 else Action.NOOP)
        now = self.seen[-1]  # the paddle is where it is now: only the ball is seen late
        if now.paddle_x is None:
            return int(Action.NOOP)
        return _towards(obj.ball_x, now.paddle_x, self.dead_zone)


class UnhurriedPolicy:
    """A chaser who, each time the ball is out, waits a random `wait` (lo, hi) steps before pressing FIRE:
    the dream must hold a ball-less screen (and not serve, nor end the game early) for as long as it takes."""

    def __init__(self, seed: int = 0, wait: tuple[int, int] = (20, 120)) -> None:
        self.chase = ChasePolicy(seed)
        self.rng, self.wait = np.random.default_rng(seed + 1), wait
        self.left: int | None = None
        """Steps still to wait before pressing FIRE (None: the ball is in play)."""

    def reset(self) -> None:
        self.chase.reset()
        self.left = None

    def act(self, frame: np.ndarray) -> int:
        a = self.chase.act(frame)
        if self.chase.seen[-1].ball_visible:
            self.left = None
            return a
        if self.left is None:  # the ball has just gone: decide how long to leave it
            self.left = int(self.rng.integers(*self.wait))
        if self.left > 0:
            self.left -= 1
            return int(Action.NOOP)
        return a


PLAYERS: dict[str, Callable[[int], Player]] = {
    "tracker": lambda seed: TrackerPolicy(noise=0.05, seed=seed),
    "chaser": lambda seed: ChasePolicy(seed, noise=0.15, lag=3),
    "sticky": lambda seed: RandomPolicy(seed, hold_max=15),
    "unhurried": lambda seed: UnhurriedPolicy(seed),
}
"""The soak probe's players by name: the tracker (the endless probe's own), a chaser who reacts up to 3 frames
late and presses a random key 15% of the time, sticky-random keys held 1-15 steps, and a chaser who leaves
each lost ball unserved for 20-120 steps."""
