"""The endless-dream probe: a long autopilot game from the reset screen, read as a player would.

The shipped model's failure was visible only over time: after about a minute of autopilot play the paddle
faded for good. So this probe plays `steps` frames with the tracker autopilot (`TrackerPolicy`, which reads
the dreamed pixels as it reads the real ones) and scores every frame with the game's one detector:

- `paddle_visible`: share of frames showing a paddle;
- `two_balls`, `two_paddles`: frames showing more than one (the real game never does);
- `ball_in_play`: share of frames showing a ball (the detector misses it where it touches a brick or the
  paddle, in the wall's gaps at the side walls, and dimmer than `GAP_PEAK` there);
- `bricks_broken`: brick slots that stood and then stayed empty (3 frames each way, so a ball crossing a slot
  is neither);
- `brick_rises`: times a slot came back after being empty (the wall only grows back on a new level or game),
  and `brick_rise_slots`: how many slots did;
- `lives_lost`, `lives_rises`, `score_drops`: the scoreboard, read frame to frame (a rise or a drop means a
  hidden reset, or digits the model does not keep);
- `score_readable`, `lives_readable`: shares of frames whose score (3 digits) and lives digit read as digits.
  The real game blends a digit for a frame as it changes; a dream that stops a change halfway keeps the blend.

The same policy, seed and step count in the real game give the reference beside every figure (`real_*`).
The real game ends when the lives run out and starts a new game (counted in `real_games`); the dream does
not end, so its figures are over one long dream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from neuroplay.config import Action
from neuroplay.envs.breakout import bricks, detect, read_scoreboard
from neuroplay.envs.players import PLAYERS
from neuroplay.evaluation.objects import gates

ENDLESS_GATES: dict[str, tuple[str, float]] = {
    "paddle_visible": (">=", 0.99),
    "two_balls": ("<=", 0),
    "two_paddles": ("<=", 0),
    "brick_rises": ("<=", 0),
    "ball_in_play": (">=", 0.6),
    "bricks_broken": (">=", 10),
}
"""The endless-dream gates over 2,000 autopilot steps."""
PERSIST = 3
"""Frames a brick slot must keep its state to count as standing or empty."""


class Env(Protocol):
    """What the probe drives: `DreamEnv` or `RealEnv`."""

    def reset(self) -> np.ndarray: ...

    def step(self, action: int) -> Any: ...


@dataclass
class Play:
    """A long game played by one player: the frames it saw, its actions, and what each action led to."""

    frames: np.ndarray
    """(T+1, 84, 64, 3) uint8: the frame each action was chosen on (a new game's first after a game ends)."""
    games: np.ndarray
    """(T+1,) game index of each frame."""
    actions: np.ndarray
    """(T,) the action taken on frame t."""
    ball_after: np.ndarray
    """(T,) bool: the frame action t led to shows a ball (for a game's last step, its last frame)."""
    ends: dict[int, str] = field(default_factory=dict)
    """Step -> how the game ended there: "game_over", "stalled" (the dream would not serve) or "truncated"."""
    served: int = 0
    """Serves the dream owed and took from its own most likely ones (`DreamEnv`; 0 in the real game)."""
    score_held: int = 0
    """Frames whose score tokens stayed as shown: the new score read lower, rose too far, or stayed a blend."""


def play(env: Env, steps: int, seed: int = 0, player: str = "tracker") -> Play:
    """Play `steps` actions of `PLAYERS[player]` from `env.reset()`; a finished game starts a new one."""
    policy = PLAYERS[player](seed)
    frame = env.reset()
    frames, games, actions, seen, game = [frame], [0], [], [], 0
    out = Play(np.empty(0), np.empty(0), np.empty(0), np.empty(0))
    for t in range(steps):
        a = policy.act(frame)
        s = env.step(a)
        frame = s.frame
        actions.append(a)
        seen.append(detect(frame).ball_visible)
        out.served += bool(s.info.get("served"))
        out.score_held += bool(s.info.get("score_held"))
        if s.done:
            game += 1
            out.ends[t] = next((k for k in ("game_over", "stalled") if s.info.get(k)), "truncated")
            frame = env.reset()
            policy.reset()
        frames.append(frame)
        games.append(game)
    out.frames, out.games = np.stack(frames), np.array(games)
    out.actions, out.ball_after = np.array(actions, np.int64), np.array(seen, bool)
    return out


def autopilot(env: Env, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's `play`: frames (steps+1, 84, 64, 3) and the game index of each."""
    p = play(env, steps, seed)
    return p.frames, p.games


def flow_figures(p: Play) -> dict[str, Any]:
    """How the game flowed for its player: the longest run of FIRE presses with no ball in play since one was
    last seen (in the real game at most 7 come before the serve), the steps from the last ball seen to each
    game over, and how the games ended."""
    run = worst = 0
    last_ball, to_end = -1, []
    for t, (a, seen) in enumerate(zip(p.actions, p.ball_after)):
        if seen:
            run, last_ball = 0, t
        elif a == Action.FIRE:
            run += 1
            worst = max(worst, run)
        if t in p.ends:
            if p.ends[t] == "game_over":
                to_end.append(t - last_ball)
            run, last_ball = 0, t
    ends = list(p.ends.values())
    return {
        "fire_unserved_max": worst,
        "game_overs": ends.count("game_over"),
        "stalls": ends.count("stalled"),
        "last_ball_to_end_max": max(to_end, default=0),
        "served_by_flow": p.served,
        "score_held": p.score_held,
    }


def _persistent(x: np.ndarray) -> np.ndarray:
    """(T, ...) bool -> (T, ...) bool: true at t when x holds at t..t+PERSIST-1."""
    out = x[: len(x) - PERSIST + 1].copy()
    for k in range(1, PERSIST):
        out &= x[k : len(x) - PERSIST + 1 + k]
    return out


def brick_changes(slots: np.ndarray) -> tuple[int, int, int]:
    """(broken, rises, slots that rose) of one game's brick slots (T, 6, 18) bool, each state needing `PERSIST`
    frames. A slot can rise many times: a dim smudge that a decoder leaves where a brick broke, flickering
    about the detector's threshold, counts at every crossing, so the slots are counted apart."""
    if len(slots) < PERSIST:
        return 0, 0, 0
    stand, empty = _persistent(slots), _persistent(~slots)
    was_standing = np.maximum.accumulate(stand, 0)  # (T', 6, 18): stood at some frame so far
    gone_after = was_standing[:-1] & empty[1:]  # emptied after having stood
    broken = int(gone_after.any(0).sum())
    was_gone = np.maximum.accumulate(np.concatenate([np.zeros_like(empty[:1]), gone_after], 0), 0)
    rose = was_gone[:-1] & stand[1:] & ~stand[:-1]  # (T'-1, 6, 18): a slot standing again after it was broken
    return broken, int(rose.sum()), int(rose.any(0).sum())


def stable_runs(values: list[int | None]) -> list[int]:
    """The values of the runs of equal readings at least `PERSIST` frames long, in order: a digit misread for
    a frame or two (the real game blends two frames where a digit changes) is not a change."""
    out: list[int] = []
    run_value, run_len = None, 0
    for v in [*values, None]:
        if v == run_value and v is not None:
            run_len += 1
            continue
        if run_value is not None and run_len >= PERSIST and (not out or out[-1] != run_value):
            out.append(run_value)
        run_value, run_len = v, 1
    return out


def figures(frames: np.ndarray, games: np.ndarray | None = None) -> dict[str, Any]:
    """The probe's figures for frames (T, 84, 64, 3) uint8, split into games by `games` (T,) (default one)."""
    games = np.zeros(len(frames), int) if games is None else np.asarray(games)
    objs = [detect(f) for f in frames]
    boards = [read_scoreboard(f) for f in frames]
    slots = np.stack([bricks(f) for f in frames])  # (T, 6, 18)
    broken = rises = rise_slots = lives_lost = lives_rises = score_drops = 0
    for g in np.unique(games):
        idx = np.nonzero(games == g)[0]
        b, r, rs = brick_changes(slots[idx])
        broken, rises, rise_slots = broken + b, rises + r, rise_slots + rs
        dl = np.diff(np.array(stable_runs([boards[i].lives for i in idx]), int))
        ds = np.diff(np.array(stable_runs([boards[i].score for i in idx]), int))
        lives_lost += int((dl < 0).sum())
        lives_rises += int((dl > 0).sum())
        score_drops += int((ds < 0).sum())
    return {
        "frames": len(frames),
        "paddle_visible": float(np.mean([o.paddle_x is not None for o in objs])),
        "two_balls": int(sum(o.n_balls > 1 for o in objs)),
        "two_paddles": int(sum(o.n_paddles > 1 for o in objs)),
        "ball_in_play": float(np.mean([o.ball_visible for o in objs])),
        "bricks_broken": broken,
        "brick_rises": rises,
        "brick_rise_slots": rise_slots,
        "lives_lost": lives_lost,
        "lives_rises": lives_rises,
        "score_drops": score_drops,
        "score_readable": float(np.mean([b.score is not None for b in boards])),
        "lives_readable": float(np.mean([b.lives is not None for b in boards])),
        "games": int(len(np.unique(games))),
    }


def endless(dream: Env, steps: int = 2000, seed: int = 0, real: Env | None = None) -> dict[str, Any]:
    """Figures of `steps` autopilot frames in `dream`, with the real game's as `real_*` when `real` is given."""
    out = {f"endless_{k}": v for k, v in figures(*autopilot(dream, steps, seed)).items()}
    if real is not None:
        out.update({f"endless_real_{k}": v for k, v in figures(*autopilot(real, steps, seed)).items()})
    out["endless_gates"] = gates({k: out[f"endless_{k}"] for k in ENDLESS_GATES}, ENDLESS_GATES)
    return out


def soak(make_dream: Callable[[int], Env], make_real: Callable[[int], Env] | None, steps: int,
         seeds: tuple[int, ...] = (0, 1, 2), players: tuple[str, ...] = tuple(PLAYERS)) -> dict[str, Any]:
    """Every player at every seed for `steps` steps, each side from a fresh env of that seed: the endless
    figures and the flow figures, in the dream and (given `make_real`) in the real game under the same player.
    Keys "<player>/<seed>/<dream|real>"."""
    out: dict[str, Any] = {}
    for name in players:
        for seed in seeds:
            for side, make in (("dream", make_dream), ("real", make_real)):
                if make is not None:
                    p = play(make(seed), steps, seed, name)
                    out[f"{name}/{seed}/{side}"] = {**figures(p.frames, p.games), **flow_figures(p)}
    return out
