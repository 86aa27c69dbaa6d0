"""The real game on the probes' own states: recorded ALE episodes replay frame for frame, a tampered one is
left out, and the emulator then answers the probes' questions as the game's facts say it must."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuroplay.data.episodes import Episodes
from neuroplay.envs.breakout import detect
from neuroplay.evaluation.frames import EvalData
from neuroplay.evaluation.realgame import Replay, fire_delays, tracker_flight


def test_recorded_episodes_replay_and_a_tampered_one_does_not(breakout_file: Path, tmp_path: Path) -> None:
    eps = Episodes.load(breakout_file)
    data = EvalData(eps)
    rep = Replay(data)
    samples = np.array([[e, 0] for e in range(data.n_episodes)])
    assert rep.replays(samples).all()
    e, t = 2, 40
    env = rep.at(e, t)  # stepping the recorded action from the restored state gives the recorded next frame
    a = int(data.actions_at(np.array([[e, t]]))[0])
    nxt = data.images(data.rows(np.array([[e, t]]), 1))[0]
    assert np.array_equal(env.step(a).frame, nxt)

    frames = np.array(eps.frames)
    frames[data.frame_offsets[1] + 30, 40, 30] ^= 0x40  # one pixel of episode 1
    bad = Episodes(frames=frames, tokens=None, actions=eps.actions, rewards=eps.rewards, dones=eps.dones,
                   episode_lengths=eps.episode_lengths, sources=eps.sources, meta=eps.meta)
    assert Replay(EvalData(bad)).replays(samples).tolist() == [e != 1 for e in range(data.n_episodes)]


def test_the_emulator_answers_the_probes(breakout_file: Path) -> None:
    data = EvalData(Episodes.load(breakout_file))
    rep = Replay(data)
    starts = np.array([[e, 0] for e in range(data.n_episodes)])
    fire, noop = fire_delays(rep, starts, 8)
    assert (fire == 0).all() and (noop == -1).all()  # from reset FIRE shows the ball on the first step; NOOP never
    # states with the ball moving: the tracker keeps it in view most of 20 steps, as it does in the recording
    rows = np.arange(data.n_rows)
    vis = np.array([detect(f).ball_visible for f in data.images(rows)])
    flying = np.array([[e, t] for e in range(data.n_episodes) for t in range(20, int(data.episode_lengths[e]) - 20)
                       if vis[data.frame_offsets[e] + t] and vis[data.frame_offsets[e] + t - 1]])[::25]
    r = data.rows(flying)
    seen = tracker_flight(rep, flying, 20, np.arange(len(flying)), data.images(r), data.images(r - 1))
    assert len(flying) >= 4 and seen.mean() > 0.8
    assert seen[:, 0].all()  # the ball was moving: it is still there one step later


def test_a_new_game_without_reloading_the_rom_is_the_same_game() -> None:
    """`reset(seed)` reloads the ROM only for another seed (a reload costs two frames of the game loop when a game
    over starts the next game); a game from `reset_game` after a long game plays exactly as a fresh one."""
    from neuroplay.envs.real import RealEnv

    fresh, used = RealEnv(seed=4), RealEnv(seed=4)
    fresh.reset(seed=4)
    used.reset(seed=4)
    rng = np.random.default_rng(4)
    for _ in range(600):
        if used.step(int(rng.integers(4))).done:
            used.reset(seed=4)
    assert np.array_equal(used.reset(seed=4), fresh.frame)
    for a in rng.integers(4, size=1500):
        s, t = fresh.step(int(a)), used.step(int(a))
        assert np.array_equal(s.frame, t.frame) and s.reward == t.reward and s.done == t.done
        if s.done:
            break
    other = RealEnv(seed=4)
    other.reset(seed=9)  # another seed still reloads
    assert other._seed == 9
