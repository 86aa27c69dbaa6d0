"""The gameplay probes' event reading on real ALE play: what `event_steps` calls a brick hit is what the game
scores, and its bounces and lost balls are those that training's `frame_events` finds."""

from __future__ import annotations

import numpy as np

from neuroplay.envs.breakout import BOUNCE, LOST, TrackerPolicy, frame_events
from neuroplay.envs.real import RealEnv
from neuroplay.evaluation.gameplay import event_steps


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
