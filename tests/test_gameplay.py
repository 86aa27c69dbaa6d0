"""The gameplay probes' event reading on real ALE play: what `event_steps` calls a brick hit is what the game
scores, and its bounces and lost balls are those that training's `frame_events` finds."""

from __future__ import annotations

import numpy as np

from neuroplay.envs.events import BOUNCE, LOST, frame_events
from neuroplay.envs.players import TrackerPolicy
from neuroplay.envs.real import RealEnv
from neuroplay.evaluation.gameplay import _hit_score, _scores, event_steps, score_rise


def _play(steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    env, policy = RealEnv(seed=seed), TrackerPolicy(noise=0.1, seed=seed)
    frames, rewards = [env.reset()], []
    for _ in range(steps):
        s = env.step(policy.act(frames[-1]))
        frames.append(s.frame)
        rewards.append(s.reward)
        if s.done:
            break
    return np.stack(frames), np.array(rewards, np.float32)


def test_event_steps_agree_with_the_game() -> None:
    frames, rewards = _play(600, seed=4)
    ev = event_steps(frames)
    scored = np.nonzero(np.concatenate([[False], rewards > 0]))[0]  # the transition into frame i scored
    hits = np.nonzero(ev["hit"])[0]
    assert len(scored) >= 5
    # A scored hit takes a brick off the wall in that frame or the next (the probes allow a frame either way)...
    assert all(ev["hit"][i : i + 2].any() for i in scored)
    # ...and bricks seldom vanish unscored (a ball crossing an empty slot can read as a brick for a frame).
    assert sum(not ((hits[j] - scored >= 0) & (hits[j] - scored <= 1)).any() for j in range(len(hits))) <= 2
    ref = frame_events(frames, rewards, np.array([len(rewards)]))
    assert np.array_equal(ev["bounce"], (ref & BOUNCE) > 0) and np.array_equal(ev["lost"], (ref & LOST) > 0)
    assert ev["lost"].any() and ev["lives_down"].any()  # 600 tracker steps lose a ball
    first_down = int(np.argmax(ev["lives_down"]))
    assert ev["gone"][first_down - 3 : first_down].all()  # the digit counts down after the ball has gone


def test_hit_score_is_timed_by_the_real_score() -> None:
    """The score test of the hit probe, on real play: in a window like the probe's (3 history frames, the hit
    1-3 frames later), the screen's score rises within a frame of the reward, so the real game passes its own
    test on every hit, and a dream with the real frames passes while a frozen or 2-frames-late score fails."""
    frames, rewards = _play(600, seed=4)
    ev = event_steps(frames)
    scored = set(np.nonzero(np.concatenate([[False], rewards > 0]))[0].tolist())
    tried = 0
    for k in np.nonzero(ev["hit"])[0]:
        if k < 5 or k + 5 > len(frames) or not (set(range(k - 1, k + 2)) & scored):
            continue
        w = _scores(frames[k - 4 : k + 4])  # index 4 = the brick's frame, the probe's k = 4
        if w[0] is None or len({x for x in w[:3]}) > 1:
            continue  # a score still moving from an earlier hit: the probe's history is clean of hits
        j = score_rise(w)
        assert j is not None and 3 <= j <= 5, (k, w)
        assert _hit_score(w, w)
        assert not _hit_score([w[0]] * len(w), w)
        late = w[:3] + [w[0]] * (j + 2 - 3) + w[j:]
        assert not _hit_score(late[: len(w)], w)
        early = w[j - 2 :] + w[-1:] * (j - 2)  # the rise moved into the last history frame: it cannot be scored,
        assert score_rise(early) == 2 and not _hit_score(early, early)  # or a dream keeping the score would pass
        tried += 1
    assert tried >= 3
