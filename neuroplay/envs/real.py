"""The real game: ALE Breakout with the project's preprocessing, behind the same `reset`/`step` as the dream.

Preprocessing (the reference design): RGB 210x160, frameskip 4, max over the last 2 raw frames (Atari sprites
flicker), resize to 84 high x 64 wide with `cv2.INTER_AREA`, uint8. Bulk collection uses ALE's C++
`AtariVectorEnv`, which does the same; a test checks the two agree pixel for pixel. This single-env
version is the reference, the game's "real" mode, and what the alignment test replays actions in.
No sticky actions: the action stored is the action executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from neuroplay.config import FRAME_H, FRAME_W
from neuroplay.errors import SetupError

GAME = "breakout"
MAX_EPISODE_STEPS = 27_000  # ALE's default 108k emulator frames / frameskip 4


@dataclass
class EnvStep:
    """What `step` returns, for the real game and the dream alike."""

    frame: np.ndarray
    """(84, 64, 3) uint8 observation after the action."""
    reward: float = 0.0
    done: bool = False
    """Game over or time limit (the next `step` needs a `reset`)."""
    info: dict[str, Any] = field(default_factory=dict)


def preprocess(raw_a: np.ndarray, raw_b: np.ndarray | None = None) -> np.ndarray:
    """Max-pool two raw (210, 160, 3) frames and area-resize to (84, 64, 3) uint8."""
    x = raw_a if raw_b is None else np.maximum(raw_a, raw_b)
    return cv2.resize(x, (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)


def rom_path() -> str:
    """Breakout's ROM as shipped inside ale-py (nothing is downloaded)."""
    from ale_py import roms

    try:
        return str(roms.get_rom_path(GAME))
    except Exception as e:  # noqa: BLE001 - ale-py raises various types across versions
        raise SetupError(f"the Breakout ROM is missing from ale-py ({e}); reinstall ale-py") from e


class RealEnv:
    """One ALE Breakout emulator with the dataset's preprocessing and 4 actions (NOOP, FIRE, RIGHT, LEFT)."""

    def __init__(self, seed: int = 0, frameskip: int = 4, max_steps: int = MAX_EPISODE_STEPS) -> None:
        from ale_py import ALEInterface, LoggerMode

        ALEInterface.setLoggerMode(LoggerMode.Error)
        self.ale = ALEInterface()
        self.ale.setInt("random_seed", int(seed))
        self._seed = int(seed)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.loadROM(rom_path())
        self.actions = list(self.ale.getMinimalActionSet())
        assert len(self.actions) == 4, self.actions
        self.frameskip, self.max_steps = frameskip, max_steps
        self.t = 0
        self.frame: np.ndarray | None = None
        self._pool: list[np.ndarray] = []

    @property
    def lives(self) -> int:
        return int(self.ale.lives())

    @property
    def ram(self) -> np.ndarray:
        return self.ale.getRAM()

    def reset(self, seed: int | None = None) -> np.ndarray:
        """A new game; `seed` reloads the ROM under that seed, unless it is the one loaded (a reload takes ~70 ms,
        two dropped frames when a game over starts the next game, and a game from `reset_game` is the same)."""
        if seed is not None and seed != self._seed:
            self.ale.setInt("random_seed", int(seed))
            self.ale.loadROM(rom_path())
            self._seed = int(seed)
        self.ale.reset_game()
        self.t = 0
        screen = self.ale.getScreenRGB()
        self._pool = [screen, screen]
        self.frame = preprocess(screen)
        return self.frame

    def step(self, action: int) -> EnvStep:
        if self.frame is None:
            raise RuntimeError("call reset() before step()")
        if not 0 <= int(action) < 4:
            raise ValueError(f"action must be 0..3, got {action}")
        reward = 0.0
        a = self.actions[int(action)]
        for i in range(self.frameskip):
            reward += self.ale.act(a)
            if self.ale.game_over():
                break  # the game-over emulator frame is never pooled (AtariVectorEnv semantics)
            if i >= self.frameskip - 2:  # the two pooled frames go to slots that alternate by step parity
                self._pool[(self.t + i) % 2] = self.ale.getScreenRGB()
        self.frame = preprocess(self._pool[0], self._pool[1])
        self.t += 1
        over = self.ale.game_over()
        done = over or self.t >= self.max_steps
        return EnvStep(self.frame, float(reward), bool(done),
                       {"lives": self.lives, "t": self.t, "game_over": over, "truncated": done and not over})

    def ram_ball(self) -> tuple[float, float] | None:
        """The ball's position by the RAM, in frame pixels (x, y) of the 84x64 observation (fitted against the
        detector on open-field frames: within 1.8 px, median 0.45); None when no ball is in play. Unlike
        `lone_ball` it holds whatever the ball touches: the check that no reading is off the emulator's ball."""
        ram = self.ram
        if ram[101] == 0:
            return None
        return float((int(ram[99]) - 49) * FRAME_W / 160), float((int(ram[101]) + 9) * FRAME_H / 210)

    def lone_ball(self) -> tuple[float, float] | None:
        """Where a player sees the ball now, from the emulator itself, in frame pixels (x, y) of the 84x64
        observation: the blob of colour at the RAM's ball position on the two pooled full-resolution screens,
        if it stands alone; None when the ball is out of play or touches a brick, the paddle or a wall's coloured
        foot (the grey walls have no chroma, so a ball beside them stands alone). The detector's reference
        (tests/test_objects.py, benchmarks/detector_recall.py)."""
        ram = self.ram
        y, x = int(ram[101]) + 11, int(ram[99]) - 48  # the ball's screen position, fitted on open-field frames
        if ram[101] == 0 or not (0 <= y < 210 and 0 <= x < 160):
            return None
        s = np.maximum(self._pool[0], self._pool[1]).astype(np.int16)  # (210, 160, 3): what `frame` pools
        n, labels = cv2.connectedComponents(((s.max(-1) - s.min(-1)) > 40).view(np.uint8), connectivity=8)
        ks = set(labels[max(y - 3, 0) : y + 5, max(x - 2, 0) : x + 4].ravel().tolist()) - {0}
        if len(ks) != 1:
            return None
        ys, xs = np.nonzero(labels == ks.pop())
        if xs.max() - xs.min() > 6 or ys.max() - ys.min() > 12:  # part of a brick, the paddle or a wall
            return None
        return float((xs.mean() + 0.5) * FRAME_W / 160), float((ys.mean() + 0.5) * FRAME_H / 210)

    def bookmark(self) -> tuple[Any, int]:
        """The emulator state and step count alone (about 8 KB)."""
        return self.ale.cloneState(), self.t

    def go_to(self, mark: tuple[Any, int], frame: np.ndarray) -> None:
        """Back to a `bookmark`, showing `frame` (the frame it was taken at). Both pooled screens become the
        emulator's current one: the next step overwrites both, unless the game ends in its first two frames."""
        self.ale.restoreState(mark[0])
        self.t = mark[1]
        screen = self.ale.getScreenRGB()
        self._pool, self.frame = [screen, screen.copy()], frame
