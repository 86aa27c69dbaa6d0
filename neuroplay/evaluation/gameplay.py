"""Gameplay probes, each beside the real game's figure on the same states.

- `reset_launch`: from the reset screen (a fresh emulator's first frame and 3 NOOPs), FIRE shows a ball on
  the first dreamed frame, over `reset_tries` decoder seeds (argmax: every try alike); NOOP is the control.
  The real game does it every time (checked here with ALE, not assumed).
- `flight`: from mid-game states with the ball in play, the tracker autopilot plays the dream for
  `flight_steps` frames, reading the dreamed pixels as it reads the real ones; the share of dreamed frames
  that show a ball, beside the same tracker playing the real game from the same states (replayed in ALE,
  `evaluation.realgame`) and the share of the recorded real frames that do. And under the recorded actions,
  the median distance between the dreamed and the real ball over the first 5 frames, where both show one.
- `bounce`, `hit`, `lost`: states whose real continuation has the event 1-3 frames ahead (found by the
  detector, as `frame_events` finds them for training), dreamed under the recorded actions. A bounce counts
  when the dreamed ball flips direction within one frame of the real flip; a hit when the dreamed wall loses
  a brick within one frame of the real one (and, separately, when the dreamed score rises within one frame of
  the real score, which ALE moves a frame before the brick or up to 2 after; scored where that rise falls in
  the dreamed frames); a lost ball when
  the dreamed ball vanishes within one frame of the real one and the lives digit then counts down. The same test
  on the real frames gives the figure beside it (the detector's own ceiling). The lost ball's halves are also
  reported alone (`lost_gone_rate`, `lost_lives_down_rate`), with `lost_digit_readable`: the share of windows
  whose last dreamed frame shows a lives digit at all. A dream that starts the countdown and stops halfway
  leaves a blend of two digits, and keeps it.

States come from the tier's samples in a seeded order (`probes.scan_states`), as the other probes'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuroplay.envs.breakout import ball_positions, ball_xy, bricks, detect, lives_shown, read_scoreboard
from neuroplay.envs.events import BOUNCE, LOST, track_events
from neuroplay.evaluation.dreamer import Dreamer
from neuroplay.evaluation.frames import FIRE, NOOP, EvalData, FrameSource, to_uint8
from neuroplay.evaluation.metrics import SANE_PSNR
from neuroplay.evaluation.probes import dream_batch, dream_frames, scan_states
from neuroplay.evaluation.realgame import Replay, primed_trackers, tracker_flight
from neuroplay.models.decoding import ARGMAX, DecodeConfig, TokenDecoder
from neuroplay.psnr import frame_psnr

LEAD = 3
"""The event happens 1..LEAD frames after the last history frame."""
EVENT_WINDOW = {"bounce": LEAD + 2, "hit": LEAD + 2, "lost": LEAD + 10}
"""Frames dreamed after the history for each event probe: the lives digit counts down 6-8 frames after a
lost ball vanishes (held-out play)."""


def event_steps(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Frames (T, 84, 64, 3) of one window -> per frame bool (T,) of each event: "bounce" and "lost" (the
    ball's direction flipped; it vanished low and stayed gone, or the lives digit counted down: as
    `frame_events` finds them for training), "hit" (a standing brick fewer than the frame before), "lives_down"
    (the lives digit below the window's first reading), "lives_read" (the lives cell reads as a digit) and "gone"
    (no ball seen)."""
    nb = np.array([bricks(f).sum() for f in frames])
    return events_from(ball_positions(frames), lives_shown(frames), nb)  # one detector pass and digit read a frame


def real_event_steps(src: FrameSource, rows: np.ndarray) -> dict[str, np.ndarray]:
    """`event_steps` of the real frames of rows (T,), from the source's remembered readings of each row."""
    lives, nb = src.real_board(rows)
    return events_from(ball_xy(src.real_objects(rows)), lives, nb)


def events_from(pos: np.ndarray, lives: np.ndarray, nb: np.ndarray) -> dict[str, np.ndarray]:
    """`event_steps` from a window's readings: ball (T, 2) (NaN: none), lives digit (T,) (-1: none), standing
    bricks (T,)."""
    ev = track_events(pos, lives, np.zeros(len(pos) - 1, np.float32), np.array([len(pos) - 1]))
    first = lives[lives >= 0][0] if (lives >= 0).any() else -1
    return {"bounce": (ev & BOUNCE) > 0, "lost": (ev & LOST) > 0, "hit": np.concatenate([[False], np.diff(nb) < 0]),
            "lives_down": (lives >= 0) & (first >= 0) & (lives < first), "lives_read": lives >= 0,
            "gone": np.isnan(pos[:, 0])}


def _scores(frames: np.ndarray) -> list[int | None]:
    """The score each frame of a window shows (None: a cell reads as no digit)."""
    return [read_scoreboard(f).score for f in frames]


def score_rise(real: list[int | None]) -> int | None:
    """Index of the first frame whose real score reads above the window's first (index 0, before the hit);
    None when the first is unreadable or the score never rises. The score is timed on its own, not by the
    brick: ALE draws it a frame before the brick goes, or up to 2 after, so a test tied to the brick's frame
    failed the real game itself on 6% of held-out hits."""
    if real[0] is None:
        return None
    return next((j for j, x in enumerate(real) if x is not None and x > real[0]), None)


def _hit_score(dream: list[int | None], real: list[int | None]) -> bool | None:
    """The dreamed score rises within one frame of the real score's rise (`score_rise`), above the score before
    the hit; None (the hit is left out of the figure) when the real score never rises or already rose in the
    window's first 3 frames, the real history: there a dream that only keeps the score would pass."""
    j = score_rise(real)
    if j is None or j < 3:
        return None
    return any(x is not None and x > real[0] for x in dream[j - 1 : j + 2])  # type: ignore[operator]


def _near(k: int, n: int) -> slice:
    """The dreamed frames within one frame of the real event at k, in a window of n (index 3: first dreamed)."""
    return slice(max(k - 1, 3), min(k + 2, n))


def _lost_halves(ev: dict[str, np.ndarray], k: int) -> tuple[bool, bool]:
    """A lost ball's two halves in a window: the ball vanishes within a frame of the real one (at k), and the
    lives digit counts down."""
    return bool(ev["gone"][_near(k, len(ev["gone"]))].any()), bool(ev["lives_down"].any())


def _passes(kind: str, ev: dict[str, np.ndarray], k: int) -> bool:
    """Does a window (index 0 = 2 frames before the last history frame) show `kind` as the real one did at k?"""
    if kind == "lost":
        return all(_lost_halves(ev, k))
    return bool(ev[kind][_near(k, len(ev[kind]))].any())


def _event_probe(ctx: tuple, cands: np.ndarray, kind: str, n: int) -> dict[str, Any]:
    data, src = ctx[1], ctx[2]
    h = EVENT_WINDOW[kind]
    cands = cands[cands[:, 1] + h <= data.episode_lengths[cands[:, 0]]]
    found: dict[tuple[int, int], int] = {}

    def check(c: np.ndarray) -> np.ndarray:
        rows = data.rows(c, np.arange(-2, h + 1))  # (len(c), h + 3)
        ok = np.zeros(len(c), bool)
        for i, w in enumerate(rows):
            ev = real_event_steps(src, w)
            at = [j for j in range(3, 3 + LEAD) if ev[kind][j]]  # index 3 = frame t+1
            history_clean = not ev[kind][:3].any() and not (kind == "lost" and ev["gone"][:3].any())
            if at and history_clean:
                ok[i] = True
                found[(int(c[i, 0]), int(c[i, 1]))] = at[0]
        return ok

    states = scan_states(cands, n, check)
    if len(states) == 0:
        return {f"{kind}_rate": None, f"{kind}_states": 0}
    ks = np.array([found[(int(e), int(t))] for e, t in states])
    acts = data.actions_at(states, np.arange(h))
    dreamed, _, sane = dream_frames(ctx, states, acts)  # (n, h, 84, 64, 3)
    rows = data.rows(states, np.arange(-2, h + 1))  # (n, h + 3)
    real = src.real_uint8(rows.reshape(-1)).reshape(len(states), h + 3, 84, 64, 3)
    ok_dream, ok_real, score_dream, score_real = [], [], [], []
    halves: list[tuple[bool, bool, bool]] = []  # lost: (gone, lives down, lives digit readable at the end)
    for i in range(len(states)):
        win = np.concatenate([real[i, :3], np.where(sane[i][:, None, None, None], dreamed[i], 0)])
        ev = event_steps(win)
        ok_dream.append(_passes(kind, ev, ks[i]))
        ok_real.append(_passes(kind, real_event_steps(src, rows[i]), ks[i]))
        if kind == "lost":
            halves.append((*_lost_halves(ev, ks[i]), bool(ev["lives_read"][-1])))
        if kind == "hit":
            real_scores = _scores(real[i])
            got = _hit_score(_scores(win), real_scores)
            if got is not None:  # the real score rises in the dreamed frames
                score_dream.append(got)
                score_real.append(bool(_hit_score(real_scores, real_scores)))
    out = {f"{kind}_rate": float(np.mean(ok_dream)), f"{kind}_real_rate": float(np.mean(ok_real)),
           f"{kind}_states": len(states)}
    if kind == "lost":  # which half fails: the ball stays, or the digit does not count down (or ends garbled)
        gone, down, readable = np.array(halves).mean(0)
        out.update(lost_gone_rate=float(gone), lost_lives_down_rate=float(down), lost_digit_readable=float(readable))
    if kind == "hit":
        out.update(hit_score_rate=float(np.mean(score_dream)) if score_dream else None,
                   hit_score_real_rate=float(np.mean(score_real)) if score_real else None,
                   hit_score_states=len(score_dream))
    return out


def _flight(ctx: tuple, states: np.ndarray, steps: int) -> dict[str, Any]:
    """The tracker plays the dream from each state; plus the ball's position error under recorded actions."""
    wm, data, src, bs, use_cache, decode, seed = ctx
    seen_dream: list[bool] = []
    seen_real: list[np.ndarray] = []
    acts = data.actions_at(states, np.arange(5))
    rec: list[np.ndarray] = []
    lasts: list[np.ndarray] = []
    for i in range(0, len(states), bs):
        s = states[i : i + bs]
        rows = data.rows(s)
        dreamer = src.dreamer(wm, s, use_cache)
        f5, last5 = dream_batch(ctx, dreamer.tile(1), acts[i : i + bs], i)  # a copy: the recorded actions
        rec.append(f5)
        lasts.append(last5)
        dec = TokenDecoder(decode, seed * 1_000_003 + i, src.device)
        players = primed_trackers(seed + i + np.arange(len(s)), src.real_uint8(rows - 1))  # per state, not slot
        last = src.real_uint8(rows)
        frame, prev = last, dreamer.last
        for _ in range(steps):
            a = torch.tensor([p.act(f) for p, f in zip(players, frame)], device=src.device)
            lg = dreamer.logits(a)
            tok = dec(lg, prev)
            dreamer.push(tok, a)
            frame, prev = to_uint8(src.decode01(tok)), tok
            sane = frame_psnr(frame, last) >= SANE_PSNR
            seen_dream.extend(bool(ok) and detect(f).ball_visible for f, ok in zip(frame, sane))
        seen_real.append(np.array([o.ball_visible for o in src.real_objects(data.rows(s, 1 + np.arange(steps)))]))
    out: dict[str, Any] = {"flight_visible": float(np.mean(seen_dream)),
                           "flight_real_visible": float(np.mean(np.concatenate(seen_real))),
                           "flight_states": len(states), "flight_steps": steps}
    out.update(_flight_real(ctx, states, steps))
    dreamed, start = np.concatenate(rec), np.concatenate(lasts)  # (n, 5, 84, 64, 3), (n, 84, 64, 3)
    sane = frame_psnr(dreamed, start[:, None]) >= SANE_PSNR
    real5 = src.real_objects(data.rows(states, 1 + np.arange(5)))  # (n * 5) readings, in the dreams' order
    err = []
    for d, orl, ok in zip(dreamed.reshape(-1, 84, 64, 3), real5, sane.reshape(-1)):
        od = detect(d)
        if ok and od.ball_visible and orl.ball_visible:
            err.append(np.hypot(od.ball_x - orl.ball_x, od.ball_y - orl.ball_y))  # type: ignore[operator]
    out["flight_pos_err"] = float(np.median(err)) if err else None
    out["flight_pos_pairs"] = len(err)
    return out


def _flight_real(ctx: tuple, states: np.ndarray, steps: int) -> dict[str, Any]:
    """The tracker plays the real game from the flight probe's own states (those that replay in ALE), seeded and
    primed as it is in the dream: the dream's figure on the same footing."""
    data, src, seed = ctx[1], ctx[2], ctx[6]
    replay = Replay.of(data)
    ok = replay.replays(states)
    if not ok.any():
        return {"flight_tracker_real_states": 0}
    idx = np.nonzero(ok)[0]
    rows = data.rows(states[idx])
    seen = tracker_flight(replay, states[idx], steps, seed + idx, src.real_uint8(rows), src.real_uint8(rows - 1))
    return {"flight_tracker_real_states": len(idx), "flight_tracker_real_visible": float(seen.mean())}


def _reset_launch(ctx: tuple, tries: int) -> dict[str, Any]:
    from neuroplay.envs.dream import real_history
    from neuroplay.envs.real import RealEnv

    wm, _, src, _, use_cache, decode, seed = ctx
    frames = real_history(seed)  # (4, 84, 64, 3): the reset screen and 3 NOOPs
    tok = src.encode(torch.from_numpy(frames).to(src.device))  # (4, 336)
    out: dict[str, Any] = {"reset_tries": tries}
    for name, action in (("reset_launch", FIRE), ("reset_noop", NOOP)):
        hist = tok[None].expand(tries, -1, -1)
        d = Dreamer(wm, hist, use_cache)  # the reset NOOPs: the default history actions
        lg = d.logits(torch.full((tries,), action, device=src.device))
        first = to_uint8(src.decode01(TokenDecoder(decode, seed, src.device)(lg, hist[:, -1])))
        out[f"{name}_rate"] = float(np.mean([detect(f).ball_visible for f in first]))
    env = RealEnv(seed=seed)
    env.reset()
    for _ in range(3):
        env.step(NOOP)
    out["reset_launch_real_rate"] = float(detect(env.step(FIRE).frame).ball_visible)
    return out


@torch.inference_mode()
def gameplay_probes(
    vq: Any, wm: Any, data: EvalData, samples: np.ndarray, *, states: int = 100, flight_steps: int = 30,
    reset_tries: int = 20, seed: int = 0, batch_size: int = 32, device: torch.device | str = "cpu",
    use_cache: bool | None = None, decode: DecodeConfig = ARGMAX,
) -> dict[str, Any]:
    """The issue-15 probes on up to `states` states each (0 skips them all; `reset_tries` 0 skips the reset-screen
    launch, which needs the emulator). Returns a JSON-able dict."""
    if states <= 0:
        return {}
    device = torch.device(device)
    src = FrameSource.of(data, vq, device, max(batch_size, 64))
    cands = np.asarray(samples, np.int64)[np.random.default_rng([seed, 15]).permutation(len(samples))]
    ctx = (wm, data, src, batch_size, use_cache, decode, seed)
    out = _reset_launch(ctx, reset_tries) if reset_tries > 0 else {}
    fl = cands[cands[:, 1] + flight_steps <= data.episode_lengths[cands[:, 0]]]

    def moving(c: np.ndarray) -> np.ndarray:
        rows = data.rows(c)
        a, b = src.real_objects(rows - 1), src.real_objects(rows)
        return np.array([p.ball_visible and q.ball_visible and (p.ball_x, p.ball_y) != (q.ball_x, q.ball_y)
                         for p, q in zip(a, b)], bool)

    flying = scan_states(fl, states, moving)
    if len(flying):
        out.update(_flight(ctx, flying, flight_steps))
    for kind in ("bounce", "hit", "lost"):
        out.update(_event_probe(ctx, cands, kind, states))
    return out
