"""The rare moments a world model must learn, read off the screen by the game's one detector (`breakout`).

A launch, a lost ball, a brick hit and a bounce are each a few tokens in a few percent of frames. Training
draws windows that hold them more often (`training/wm_data.py`), the evaluation's gameplay probes find their
states with the same rules, and `flow.GameFlow` ends the dream's game where the real one would end. All of it
reads pixels only (plus the reward, for hits), so it runs on dreamed frames as on real ones.
"""

from __future__ import annotations

import numpy as np

from neuroplay.envs.breakout import ball_positions, lives_shown

LAUNCH = 1
"""A new ball is in play: visible now, in none of the 3 frames before, and not just back out of the brick wall."""
LOST = 2
"""A ball is lost: it vanished low on the screen and stayed gone, or the lives digit counted down."""
HIT = 4
"""A brick broke: the transition into this frame scored (reward > 0)."""
BOUNCE = 8
"""The ball's horizontal or vertical direction flipped (a wall, the ceiling, the paddle or a brick)."""
EVENT_BITS = {"launch": LAUNCH, "lost": LOST, "hit": HIT, "bounce": BOUNCE}
"""Name -> bit of each event in `frame_events`' mask (logs and reports)."""
LOW_Y = 60.0
"""A ball last seen at or below this row (the lower part of the screen) that vanishes is lost, not in the wall."""
HIDDEN_MAX = 2
"""Frames a ball in flight can be unseen and still be the same ball: behind the paddle at a bounce (1-2 frames),
or in a gap of the brick wall. Measured on 20k frames of the mix: a lost ball stays gone 3 or more frames."""
LAUNCH_GAP = 3
"""A ball unseen for this many frames before it shows is a new one (the issue's rule)."""
BOUNCE_MIN_SPEED = 0.25
"""|velocity| (pixels per frame) below which a velocity has no sign: blob-centre jitter is not a bounce.
Almost all measured ball steps are over 0.5 pixels on each axis."""


def frame_events(frames: np.ndarray, rewards: np.ndarray, episode_lengths: np.ndarray) -> np.ndarray:
    """(M,) uint8 bitmask (LAUNCH | LOST | HIT | BOUNCE) per frame row of a dataset's episode layout.

    Episode e has episode_lengths[e] + 1 frames back to back; rewards[i] is the transition into the next
    frame of the same episode. An event marks the transition *into* a frame, so an episode's first frame
    has none, and nothing is compared across episodes. Sampling by event (training/wm_data.py) needs these
    because a launch, bounce, hit or lost ball is a few tokens in a few percent of frames.
    Cost: one `detect` and one digit read per frame (~0.2 ms; the rest is vectorised).
    """
    lens = np.asarray(episode_lengths, np.int64)
    m = int(lens.sum() + len(lens))
    if len(frames) != m or len(rewards) != int(lens.sum()):
        raise ValueError(f"frame_events: {len(frames)} frames and {len(rewards)} rewards do not fit "
                         f"episode_lengths (need {m} and {int(lens.sum())})")
    pos = ball_positions(frames).astype(np.float64)
    return track_events(pos, lives_shown(frames), np.asarray(rewards, np.float32), lens)


def track_events(pos: np.ndarray, lives: np.ndarray, rewards: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """`frame_events` from per-frame ball positions (M, 2) (NaN: none) and lives (M,) (-1: unread)."""
    m = len(pos)
    idx = np.arange(m)
    start = np.repeat(np.cumsum(lens + 1) - (lens + 1), lens + 1)  # first row of each frame's episode
    end = start + np.repeat(lens, lens + 1)  # last row
    seen = ~np.isnan(pos[:, 0])
    # last sighting at or before each row, and first at or after it; -1 / m when none in the episode
    last = np.maximum.accumulate(np.where(seen, idx, -1))
    last = np.where(last >= start, last, -1)
    nxt = np.minimum.accumulate(np.where(seen, idx, m)[::-1])[::-1]
    nxt = np.where(nxt <= end, nxt, m)
    inner = idx > start  # frames with a transition into them
    prev = np.where(inner, idx - 1, idx)
    b = np.where(inner, last[prev], -1)  # last sighting before t
    ev = np.zeros(m, np.uint8)

    # LAUNCH: a ball now, none in the LAUNCH_GAP frames before; the ball seen before that (if any) was low
    gap_ok = (b < 0) | (b < idx - LAUNCH_GAP)  # (b < 0: no ball yet in this episode, however early)
    was_low = (b < 0) | (pos[np.maximum(b, 0), 1] >= LOW_Y)
    ev |= np.where(inner & seen & gap_ok & was_low, LAUNCH, 0).astype(np.uint8)

    # LOST: seen low in the previous frame, and gone now and for the HIDDEN_MAX frames after (or to the end)
    low_prev = inner & seen[prev] & (pos[prev, 1] >= LOW_Y)
    gone = nxt > np.minimum(idx + HIDDEN_MAX, end)
    lost = low_prev & ~seen & gone
    # ... or the lives digit counted down (readings carried over blended frames within the episode)
    read = np.maximum.accumulate(np.where(lives >= 0, idx, -1))
    read = np.where(read >= start, read, -1)
    shown = np.where(read >= 0, lives[np.maximum(read, 0)], -1).astype(np.int16)
    lost |= inner & (shown[prev] >= 0) & (shown >= 0) & (shown < shown[prev])
    ev |= np.where(lost, LOST, 0).astype(np.uint8)

    # HIT: the transition into t scored
    r = np.zeros(m, np.float32)
    r[inner] = rewards  # transition rows are the inner frames in order
    ev |= np.where(r > 0, HIT, 0).astype(np.uint8)

    # BOUNCE: velocity in (sightings a -> b) and out (b -> t) of opposite signs on an axis; the ball may be
    # unseen for up to HIDDEN_MAX frames between sightings (behind the paddle at the bounce itself)
    a = np.where(b >= 0, last[np.maximum(b - 1, 0)], -1)
    a = np.where((b > start) & (a >= start), a, -1)
    near = seen & (b >= 0) & (a >= 0) & (idx - b <= HIDDEN_MAX + 1) & (b - a <= HIDDEN_MAX + 1)
    bs, as_ = np.maximum(b, 0), np.maximum(a, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_in = (pos[bs] - pos[as_]) / np.maximum(bs - as_, 1)[:, None]
        v_out = (pos - pos[bs]) / np.maximum(idx - bs, 1)[:, None]
        flip = (v_in * v_out < 0) & (np.abs(v_in) >= BOUNCE_MIN_SPEED) & (np.abs(v_out) >= BOUNCE_MIN_SPEED)
    ev |= np.where(near & flip.any(1), BOUNCE, 0).astype(np.uint8)
    return ev
