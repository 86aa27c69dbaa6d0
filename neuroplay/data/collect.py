"""`neuroplay collect`: Breakout episodes from ALE's C++ vector env, saved in the project's format.

`ale_py.vector_env.AtariVectorEnv` steps K emulators in C++ threads and already preprocesses as the reference design
(frameskip 4, max-pool of the last 2 frames, area resize to 84x64 RGB); `tests/test_collect.py` checks
it against the single-env reference `RealEnv` pixel for pixel. No sticky actions, no no-op or FIRE
resets, so `actions[i]` really takes `frames[i]` to `frames[i+1]` and an episode replays bit for bit
from its first frame.

Autoreset: the vector env runs in NEXT_STEP mode, i.e. the call after a terminal step resets that
emulator, ignores its action and returns the new episode's first frame. We start a new episode there
and record no action, so no frame of one episode is glued to the next.

Nothing finished is lost: every `chunk_frames` transitions the finished episodes go to a part file
(`OUT.part-000.npz`, atomic); at the end, on Ctrl-C or on an error, the parts and the episodes under
way are merged into OUT and the parts removed. After a hard kill the parts are valid dataset files
(`neuroplay data merge` joins them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from neuroplay import __version__
from neuroplay.config import FRAME_H, FRAME_W
from neuroplay.data.episodes import DatasetError, Episodes, refuse_existing
from neuroplay.envs.players import RandomPolicy, TrackerPolicy
from neuroplay.envs.real import GAME, MAX_EPISODE_STEPS
from neuroplay.errors import UsageError

PREPROCESSING = {"source": "ALE Breakout RGB 210x160", "frameskip": 4, "maxpool_last": 2,
                 "resize": "cv2.INTER_AREA to 84x64 (HxW)", "repeat_action_probability": 0.0,
                 "noop_max": 0, "fire_reset": False}

MIX = (("random", 0.15), ("sticky-random", 0.25), ("tracker", 0.6))
"""Policy shares of `--policy mix` (by episode); trackers draw a noise level from TRACKER_NOISE."""
TRACKER_NOISE = (0.02, 0.05, 0.1, 0.2, 0.35)


@dataclass
class CollectConfig:
    """Flags of `neuroplay collect`."""

    out: str = "data/atari_game_data.npz"
    """Output dataset file (.npz)."""
    frames: int = 0
    """Stop after this many transitions (0: use --episodes)."""
    episodes: int = 0
    """Stop after this many finished episodes (0: use --frames)."""
    policy: Literal["random", "sticky-random", "tracker", "mix"] = "mix"
    """Who plays: uniform random, random with held keys, the ball tracker, or a mix of all three."""
    noise: float = 0.1
    """Tracker: chance of a random action per step (mix draws from several levels)."""
    hold_max: int = 15
    """sticky-random: each action is held 1..hold_max steps."""
    envs: int = 8
    """Emulators stepped in parallel (C++ threads)."""
    threads: int = 0
    """Emulator threads (0: one per core)."""
    seed: int = 0
    """Seed of emulators and policies."""
    max_steps: int = MAX_EPISODE_STEPS
    """Cut an episode after this many steps (ALE's default 27000); the cut episode keeps max_steps - 1."""
    chunk_frames: int = 50_000
    """Write finished episodes to a part file every this many transitions."""
    progress_bar: bool = True
    """Show a progress bar with frames/s."""
    overwrite: bool = False
    """Replace an existing --out file (refused by default: it may hold a person's recordings)."""


class _Slot:
    """The episode under way in one emulator, with its policy."""

    def __init__(self, policy: object, source: str) -> None:
        self.policy, self.source = policy, source
        self.frames: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []

    def to_episodes(self, meta: dict) -> Episodes:
        n = len(self.actions)
        return Episodes(
            frames=np.stack(self.frames[: n + 1]), tokens=None, actions=np.asarray(self.actions, np.uint8),
            rewards=np.asarray(self.rewards, np.float32), dones=np.asarray(self.dones, bool),
            episode_lengths=np.asarray([n], np.int64), sources=[self.source], meta=meta,
        )


def make_policy(kind: str, rng: np.random.Generator, cfg: CollectConfig) -> tuple[object, str]:
    """A fresh policy for one episode (and its `source` label)."""
    if kind == "mix":
        names, p = zip(*MIX)
        kind = str(rng.choice(names, p=np.asarray(p)))
        if kind == "tracker":
            return TrackerPolicy(float(rng.choice(TRACKER_NOISE)), int(rng.integers(2**31))), "tracker"
    seed = int(rng.integers(2**31))
    if kind == "random":
        return RandomPolicy(seed, 1), "random"
    if kind == "sticky-random":
        return RandomPolicy(seed, cfg.hold_max), "sticky-random"
    if kind == "tracker":
        return TrackerPolicy(cfg.noise, seed), "tracker"
    raise UsageError(f"--policy: unknown policy {kind!r}")


def make_vector_env(n: int, max_steps: int, threads: int = 0):  # noqa: ANN201 - ale_py type
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        GAME, n, num_threads=threads, img_height=FRAME_H, img_width=FRAME_W, grayscale=False, stack_num=1,
        frameskip=4, maxpool=True, reward_clipping=False, repeat_action_probability=0.0, noop_max=0,
        use_fire_reset=False, episodic_life=False, max_num_frames_per_episode=max_steps * 4,
    )


def collect(cfg: CollectConfig) -> Episodes:
    """Run the collection described by `cfg`; returns what was saved to `cfg.out`."""
    if (cfg.frames > 0) == (cfg.episodes > 0):
        raise UsageError("give exactly one of --frames N or --episodes N (N > 0)")
    if cfg.envs < 1:
        raise UsageError(f"--envs must be >= 1, got {cfg.envs}")
    out = Path(cfg.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out {out}: the dataset format is .npz")
    refuse_existing(out, cfg.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"game": "ALE/Breakout-v5", "actions": ["NOOP", "FIRE", "RIGHT", "LEFT"],
            "preprocessing": PREPROCESSING, "seed": cfg.seed, "policy": cfg.policy, "collector": "AtariVectorEnv",
            "neuroplay_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rng = np.random.default_rng(cfg.seed)
    env = make_vector_env(cfg.envs, cfg.max_steps, cfg.threads)
    slots = [_Slot(*make_policy(cfg.policy, rng, cfg)) for _ in range(cfg.envs)]
    finished: list[Episodes] = []
    parts: list[Path] = []
    done_transitions = done_episodes = pending = 0
    total = cfg.frames or cfg.episodes
    bar = _bar(total, "frames" if cfg.frames else "episodes", cfg.progress_bar)
    resetting = np.zeros(cfg.envs, bool)
    completed = False
    try:
        obs, _ = env.reset(seed=cfg.seed)
        for i, s in enumerate(slots):
            s.frames.append(obs[i, 0].copy())
        while (done_transitions < cfg.frames) if cfg.frames else (done_episodes < cfg.episodes):
            actions = np.array([0 if resetting[i] else s.policy.act(s.frames[-1]) for i, s in enumerate(slots)])
            obs, rew, term, trunc, _ = env.step(actions)
            for i, s in enumerate(slots):
                if resetting[i]:  # this step was the autoreset: obs is the new episode's first frame
                    s.frames = [obs[i, 0].copy()]
                    resetting[i] = False
                    continue
                end = bool(term[i] or trunc[i])
                if not (trunc[i] and not term[i]):  # a time-limit frame is pooled unlike RealEnv's:
                    s.actions.append(int(actions[i]))  # drop it, so every stored frame replays exactly
                    s.rewards.append(float(rew[i]))
                    s.dones.append(bool(term[i]))
                    s.frames.append(obs[i, 0].copy())
                    done_transitions += 1
                    pending += 1
                    if cfg.frames:
                        bar.update(1)
                if end:
                    finished.append(s.to_episodes(meta))
                    done_episodes += 1
                    if cfg.episodes:
                        bar.update(1)
                    slots[i] = _Slot(*make_policy(cfg.policy, rng, cfg))
                    resetting[i] = True
            if pending >= cfg.chunk_frames and finished:
                parts.append(_save_part(out, len(parts), finished, meta))
                finished, pending = [], 0
        completed = True
    finally:
        bar.close()
        env.close()
        # With --frames, and after an interruption, the episodes under way are kept too, as truncated
        # episodes (dones stays False at their end); --episodes N run to completion keeps exactly N.
        if cfg.frames or not completed:
            finished += [s.to_episodes(meta) for i, s in enumerate(slots) if s.actions and not resetting[i]]
        result = _finish(out, parts, finished, meta)
    return result


def _bar(total: int, unit: str, enabled: bool):  # noqa: ANN202 - tqdm
    from tqdm import tqdm

    return tqdm(total=total, unit=unit[:-1], unit_scale=True, desc="collect", disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def _save_part(out: Path, k: int, episodes: list[Episodes], meta: dict) -> Path:
    path = out.with_name(f"{out.stem}.part-{k:03d}.npz")
    Episodes.concat(episodes, meta=meta).save(path)
    return path


def _finish(out: Path, parts: list[Path], episodes: list[Episodes], meta: dict) -> Episodes:
    """Merge part files and the last episodes into `out` (atomically), then remove the parts."""
    pieces = [Episodes.load(p) for p in parts] + episodes
    if not pieces:
        raise DatasetError(f"{out}: nothing was collected")
    merged = Episodes.concat(pieces, meta=meta)
    merged.save(out)
    for p in parts:
        p.unlink(missing_ok=True)
    return merged
