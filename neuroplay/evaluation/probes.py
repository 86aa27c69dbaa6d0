"""Behaviour probes, read from decoded dream frames with the game's own detector (`envs.breakout`).

- Action response: from the same 4-frame history, holding RIGHT for `response_steps` moves the decoded paddle
  right of where it was in the last (decoded) history frame, and holding LEFT moves it left; the dreamed frames
  must still look like the game (PSNR >= `SANE_PSNR` against that frame) and the paddle be seen in each without
  implausible jumps (`metrics.paddle_move`): a random model's noise fools the detector. Several steps, because in
  the real game an action shows mostly one step later (frameskip 4, measured on collected data).
  States whose paddle sits within `WALL_MARGIN` px of the extremes seen in the candidates are skipped: a
  paddle against a wall cannot move that way.
- FIRE launch: from states with no ball in the 4 history frames, holding FIRE shows a ball within
  `fire_steps` dreamed frames; holding NOOP is the control (in real play a ball appears without FIRE ~1%).
- Ball alive: from mid-game states (ball seen at t-1 and t, moved), a `ball_steps` open-loop dream driven by
  the recorded actions keeps the ball "alive" (`ball_alive`); only states whose real future passes the same
  test are used, so a perfect model scores 1.0.

States come from the tier's samples in a seeded order, scanned until enough qualify: deterministic for a
given tier and data (for token files also the VQ, whose decode stands in for the real frames).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neuroplay.envs.breakout import Objects, detect
from neuroplay.evaluation.dreamer import Dreamers, rollout
from neuroplay.evaluation.frames import FIRE, LEFT, NOOP, RIGHT, EvalData, FrameSource, to_uint8
from neuroplay.evaluation.metrics import SANE_PSNR, paddle_move, paddle_x, paddle_xs
from neuroplay.evaluation.realgame import Replay, fire_delays
from neuroplay.models.decoding import ARGMAX, DecodeConfig, TokenDecoder
from neuroplay.psnr import frame_psnr

WALL_MARGIN = 3.0
"""Pixels from the paddle's observed extremes inside which a state is not used for the response probe."""
MOVE_EPS = 0.5
"""Paddle displacement (px) that counts as a move."""
NOTHING = Objects(None, None, None, 0)
"""What an insane (noise) frame shows."""


def ball_alive(objs: list[Objects]) -> bool:
    """Ball seen in at least half the frames and in one of the last 5, over positions spanning >= 2 px.

    The detector misses the ball while it crosses the brick rows, so "visible every frame" would fail real
    play too; 96% of real 30-step windows from a moving ball pass this test.
    """
    seen = [o for o in objs if o.ball_visible]
    if len(seen) < max(2, len(objs) / 2) or not any(o.ball_visible for o in objs[-5:]):
        return False
    xs, ys = [o.ball_x for o in seen], [o.ball_y for o in seen]
    return max(max(xs) - min(xs), max(ys) - min(ys)) >= 2  # type: ignore[type-var, operator]


def scan_states(cands: np.ndarray, need: int, check: Callable[[np.ndarray], np.ndarray],
                chunk: int = 128) -> np.ndarray:
    """The first `need` candidates (in order) for which `check(chunk) -> bool mask` holds."""
    found: list[np.ndarray] = []
    n = 0
    for i in range(0, len(cands), chunk):
        c = cands[i : i + chunk]
        ok = c[check(c)]
        found.append(ok)
        n += len(ok)
        if n >= need:
            break
    return np.concatenate(found)[:need] if found else np.zeros((0, 2), np.int64)


@torch.inference_mode()
def run_probes(
    vq: Any, wm: Any, data: EvalData, samples: np.ndarray, *, response_states: int = 200, response_steps: int = 3,
    fire_states: int = 100, fire_steps: int = 8, ball_states: int = 100, ball_steps: int = 30, seed: int = 0,
    batch_size: int = 32, device: torch.device | str = "cpu", use_cache: bool | None = None,
    decode: DecodeConfig = ARGMAX, real_game: bool = True,
) -> dict[str, Any]:
    """The three probes on states drawn from `samples`; a count of 0 skips a probe. Returns a JSON-able dict.
    `real_game`: also ask the replayed real game (its figures do not depend on `decode`: once is enough).

    Dreams are drawn with `decode` (play's decoder), seeded by `seed` and the batch."""
    device = torch.device(device)
    src = FrameSource.of(data, vq, device, max(batch_size, 64))
    cands = np.asarray(samples, np.int64)[np.random.default_rng([seed, 8]).permutation(len(samples))]
    ctx = (wm, data, src, batch_size, use_cache, decode, seed)
    out: dict[str, Any] = {}
    if response_states > 0:
        out.update(_response(ctx, cands, response_states, response_steps))
    if fire_states > 0:
        out.update(_fire(ctx, cands, fire_states, fire_steps, real_game))
    if ball_states > 0:
        out.update(_ball(ctx, cands, ball_states, ball_steps))
    return out


def dream_frames(ctx: tuple, states: np.ndarray, actions: np.ndarray,
                 branches: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dreams from each state's real history under actions (branches * n, H): the n states under branch 0's
    actions, then under branch 1's, ... (each context warmed once, `Dreamers.tile`). Returns, in the actions'
    order, decoded frames (branches * n, H, 84, 64, 3) uint8, the decoded last history frame
    (branches * n, 84, 64, 3), and whether each dreamed frame still looks like the game (branches * n, H):
    PSNR >= `SANE_PSNR` against that frame. Decoded noise can fool the detector; only sane frames count."""
    wm, data, src, bs, use_cache, decode, seed = ctx
    n, k = len(states), branches
    acts = actions.reshape(k, n, -1)  # (branches, n, H)
    per = max(1, bs // k)  # states per batch: batches of about `bs` dreams
    out, lasts = [], []
    for i in range(0, n, per):
        d = src.dreamer(wm, states[i : i + per], use_cache)
        a = acts[:, i : i + per].reshape(-1, acts.shape[-1])  # (k*b, H)
        f, last = dream_batch(ctx, d.tile(k) if k > 1 else d, a, i)
        out.append(f.reshape(k, -1, *f.shape[1:]))
        lasts.append(last.reshape(k, -1, *last.shape[1:]))
    frames = np.concatenate(out, 1).reshape(k * n, -1, 84, 64, 3)
    last = np.concatenate(lasts, 1).reshape(k * n, 84, 64, 3)
    return frames, last, frame_psnr(frames, last[:, None]) >= SANE_PSNR


def dream_batch(ctx: tuple, d: Dreamers, actions: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Roll the fresh dreams `d` under actions (B, H) with play's decoder, seeded by the batch's first state
    index `first`: decoded frames (B, H, 84, 64, 3) and the decoded last history frame (B, 84, 64, 3), uint8."""
    src, decode, seed = ctx[2], ctx[5], ctx[6]
    dec = TokenDecoder(decode, seed * 1_000_003 + first, src.device)
    last = to_uint8(src.decode01(d.last))
    pred = rollout(d, torch.from_numpy(actions).long().to(src.device), dec)  # (B, H, 336)
    return to_uint8(src.decode01(pred)).reshape(*pred.shape[:2], 84, 64, 3), last


def _response(ctx: tuple, cands: np.ndarray, n: int, steps: int) -> dict[str, Any]:
    data, src = ctx[1], ctx[2]
    first = cands[: max(4 * n, 256)]
    x_all = paddle_xs(src.real_objects(data.rows(first)))
    if np.isnan(x_all).all():
        return {"action_response_rate": None, "action_response_states": 0}
    lo, hi = np.nanmin(x_all) + WALL_MARGIN, np.nanmax(x_all) - WALL_MARGIN

    def check(c: np.ndarray) -> np.ndarray:
        x = paddle_xs(src.real_objects(data.rows(c)))
        return ~np.isnan(x) & (x >= lo) & (x <= hi)

    states = scan_states(cands, n, check)
    if len(states) == 0:
        return {"action_response_rate": None, "action_response_states": 0}
    k = len(states)
    acts = np.concatenate([np.full((k, steps), RIGHT), np.full((k, steps), LEFT)])
    frames, last, sane = dream_frames(ctx, states, acts, branches=2)  # (2k, steps, 84, 64, 3)
    x0, ok_all = paddle_x(last[:k]), sane.all(1)
    x = paddle_x(frames.reshape(-1, 84, 64, 3)).reshape(2 * k, steps)
    dx_r, dx_l = paddle_move(x0, x[:k], ok_all[:k]), paddle_move(x0, x[k:], ok_all[k:])
    ok = (dx_r > MOVE_EPS) & (dx_l < -MOVE_EPS)  # NaN (paddle lost or jumping) compares False: a failure
    return {"action_response_rate": float(ok.mean()), "action_response_states": k,
            "action_response_steps": steps, "action_response_dx_right": _nanmean(dx_r),
            "action_response_dx_left": _nanmean(dx_l)}


def _fire(ctx: tuple, cands: np.ndarray, n: int, steps: int, real_game: bool) -> dict[str, Any]:
    data, src = ctx[1], ctx[2]
    # The recorded game goes on for `steps` frames: a state in the tail of a game that is ending (its last ball
    # lost) is no serve to ask for (the real game, replayed, never serves there).
    cands = cands[cands[:, 1] + steps <= data.episode_lengths[cands[:, 0]]]

    def check(c: np.ndarray) -> np.ndarray:
        objs = src.real_objects(data.rows(c, np.arange(-3, 1)))  # (len(c) * 4) readings
        ball = np.array([o.ball_visible for o in objs]).reshape(len(c), 4)
        pad = np.array([o.paddle_x is not None for o in objs]).reshape(len(c), 4)[:, -1]
        return ~ball.any(1) & pad

    states = scan_states(cands, n, check)
    if len(states) == 0:
        return {"fire_launch_rate": None, "noop_launch_rate": None, "fire_states": 0}
    k = len(states)
    acts = np.concatenate([np.full((k, steps), FIRE), np.full((k, steps), NOOP)])
    frames, _, sane = dream_frames(ctx, states, acts, branches=2)
    first = np.array([next((j for j, (f, ok) in enumerate(zip(d, sn)) if ok and detect(f).ball_visible), -1)
                      for d, sn in zip(frames, sane)])  # the first dreamed frame with a ball (-1: none)
    seen = first >= 0
    out = {"fire_launch_rate": float(seen[:k].mean()), "noop_launch_rate": float(seen[k:].mean()),
           "fire_states": k, "fire_steps": steps}
    out.update(_delays("fire_delay", first[:k][seen[:k]], steps))
    if real_game:
        out.update(_fire_real(data, states, steps))
    return out


def _fire_real(data: EvalData, states: np.ndarray, steps: int) -> dict[str, Any]:
    """The real game on the FIRE probe's own states (those that replay in ALE, `evaluation.realgame`)."""
    replay = Replay.of(data)
    ok = replay.replays(states)
    if not ok.any():
        return {"fire_real_states": 0}
    fire, noop = fire_delays(replay, states[ok], steps)
    return {"fire_real_states": int(ok.sum()), "fire_real_launch_rate": float((fire >= 0).mean()),
            "noop_real_launch_rate": float((noop >= 0).mean()), **_delays("fire_real_delay", fire[fire >= 0], steps)}


def _delays(name: str, d: np.ndarray, steps: int) -> dict[str, Any]:
    """Summary of serve delays d (steps under FIRE until a ball shows; 0: the first frame), of the dream or of
    the real game from the same states (`_fire_real`). Right after a lost ball the real game serves 0-7 steps
    later (22% of 50 such serves at once), by a timer that the history cannot see; the probe's states have gone
    4 frames without a ball, and there the real game serves at once more often."""
    if len(d) == 0:
        return {f"{name}_n": 0}
    return {f"{name}_n": len(d), f"{name}_at_once": float(np.mean(d == 0)), f"{name}_within_5": float(np.mean(d < 5)),
            f"{name}_median": float(np.median(d)), f"{name}_hist": np.bincount(d, minlength=steps)[:steps].tolist()}


def _ball(ctx: tuple, cands: np.ndarray, n: int, steps: int) -> dict[str, Any]:
    data, src = ctx[1], ctx[2]
    cands = cands[cands[:, 1] + steps <= data.episode_lengths[cands[:, 0]]]

    def check(c: np.ndarray) -> np.ndarray:
        rows = data.rows(c)
        now = src.real_objects(np.concatenate([rows - 1, rows]))
        a, b = now[: len(c)], now[len(c) :]
        ok = np.array([p.ball_visible and q.ball_visible and (p.ball_x, p.ball_y) != (q.ball_x, q.ball_y)
                       for p, q in zip(a, b)], bool)
        for i in np.nonzero(ok)[0]:  # the real future must keep its ball too
            ok[i] = ball_alive(src.real_objects(rows[i] + 1 + np.arange(steps)))
        return ok

    states = scan_states(cands, n, check)
    if len(states) == 0:
        return {"ball_alive_rate": None, "ball_states": 0}
    acts = data.actions_at(states, np.arange(steps))
    frames, _, sane = dream_frames(ctx, states, acts)
    objs = [[detect(f) if ok else NOTHING for f, ok in zip(d, sn)] for d, sn in zip(frames, sane)]
    alive = np.array([ball_alive(o) for o in objs])
    return {"ball_alive_rate": float(alive.mean()), "ball_states": len(states), "ball_steps": steps}


def _nanmean(x: np.ndarray) -> float | None:
    return float(np.nanmean(x)) if (~np.isnan(x)).any() else None
