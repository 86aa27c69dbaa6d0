"""Event flags (launch, lost ball, brick hit, bounce) on real Breakout frames, their storage, and event sampling.

Why these tests: the world model only learns the rare moments of the game if the windows it trains on
hold them, and that hinges on one detector (`frame_events`) flagging the right frame of each event,
never across an episode boundary, and on the flags reaching the token file and the sampler intact.
The episodes are played in the reference emulator here, with the emulator's own lives counter and
rewards as ground truth.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.breakout import detect
from neuroplay.envs.events import BOUNCE, HIT, LAUNCH, LOST, frame_events
from neuroplay.envs.players import TrackerPolicy

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3


def _scripted() -> tuple[Episodes, int, list[int]]:
    """One episode: NOOPs, FIRE, then dodge the ball until a life is lost, then track it until a brick breaks.

    Returns the episode, the index of the frame FIRE was taken at, and the emulator's lives per frame.
    """
    from neuroplay.envs.real import RealEnv

    env = RealEnv(seed=0, max_steps=3000)
    frames, actions, rewards, lives = [env.reset()], [], [], [env.lives]

    def step(a: int) -> None:
        s = env.step(a)
        frames.append(s.frame)
        actions.append(a)
        rewards.append(s.reward)
        lives.append(env.lives)

    for _ in range(4):
        step(NOOP)
    fire_at = len(frames) - 1
    step(FIRE)
    while lives[-1] == lives[0] and len(actions) < 600:  # move the paddle away from the ball
        o = detect(frames[-1])
        step(NOOP if o.ball_x is None or o.paddle_x is None else LEFT if o.ball_x > o.paddle_x else RIGHT)
    pol = TrackerPolicy(noise=0.0, seed=0)
    while not any(r > 0 for r in rewards) and len(actions) < 1500:
        step(pol.act(frames[-1]))
    for _ in range(5):
        step(NOOP)
    eps = Episodes(frames=np.stack(frames), tokens=None, actions=np.asarray(actions, np.uint8),
                   rewards=np.asarray(rewards, np.float32), dones=np.zeros(len(actions), bool),
                   episode_lengths=np.asarray([len(actions)], np.int64), sources=["tracker"], meta={})
    return eps, fire_at, lives


@pytest.fixture(scope="module")
def scripted() -> tuple[Episodes, int, list[int], np.ndarray]:
    eps, fire_at, lives = _scripted()
    return eps, fire_at, lives, frame_events(eps.frames, eps.rewards, eps.episode_lengths)


def test_fire_from_reset_flags_launch_on_first_ball_frame(scripted) -> None:
    eps, fire_at, _, ev = scripted
    seen = [detect(f).ball_visible for f in eps.frames]
    first = seen.index(True)
    assert first > fire_at and not any(seen[: fire_at + 1])
    assert ev[first] & LAUNCH
    assert not (ev[:first] & LAUNCH).any() and not (ev[first + 1 : first + 10] & LAUNCH).any()


def test_lost_ball_flagged_where_lives_drop(scripted) -> None:
    eps, fire_at, lives, ev = scripted
    drops = [i for i in range(1, len(lives)) if lives[i] < lives[i - 1]]
    assert drops, "the dodging paddle never lost the ball"
    lost = np.nonzero(ev & LOST)[0]
    assert any(abs(int(i) - drops[0]) <= 10 for i in lost)
    assert not (ev[: drops[0] - 12] & LOST).any()  # nothing while the ball was in play


def _countdowns(hold: int, seed: int = 0, losses: int = 3) -> list[tuple[int, bool]]:
    """Dodge the ball `losses` times, holding `hold` while no ball is seen (NOOP: FIRE after 12 frames, so a
    game goes on); per countdown of the lives digit, (frames since the ball was last seen, ball in that frame)."""
    from neuroplay.envs.breakout import lives_shown
    from neuroplay.envs.real import RealEnv

    env = RealEnv(seed=seed, max_steps=3000)
    env.reset()
    frame = env.step(FIRE).frame
    o, lives = detect(frame), lives_shown(frame[None])[0]
    t, last_seen, waited, out = 1, (1 if o.ball_visible else -1), 0, []
    while len(out) < losses and t < 1500:
        waited = waited + 1 if o.ball_x is None else 0
        a = (hold if waited <= 12 else FIRE) if o.ball_x is None else LEFT if o.ball_x > o.paddle_x else RIGHT
        frame, t = env.step(a).frame, t + 1
        o, before, lives = detect(frame), lives, lives_shown(frame[None])[0]
        if before >= 1 and lives == before - 1:
            out.append((t - last_seen, bool(o.ball_visible)))
        if o.ball_visible:
            last_seen = t
    return out


def test_lives_count_down_beyond_a_4_frame_window_and_with_the_serve() -> None:
    """Why the lost ball is the dream's hardest event: the lives digit counts down 5-7 frames after the ball
    was last seen, so a 4-frame window never holds the lost ball and the countdown together (lite2's stacked
    block-causal layers reach 12 frames back, so only context deeper than the window can time it); and with
    FIRE held the next ball shows in the very frame of the countdown, so serve and countdown are one event."""
    noop, fire = _countdowns(NOOP), _countdowns(FIRE)
    assert len(noop) == 3 and len(fire) == 3, "the dodging paddle did not lose three balls"
    assert all(5 <= k <= 8 for k, _ in noop + fire), (noop, fire)
    assert not any(ball for _, ball in noop)  # no serve without FIRE
    assert all(ball for _, ball in fire)  # the serve comes with the countdown


def test_brick_hit_flagged_on_rewarded_transition(scripted) -> None:
    eps, _, _, ev = scripted
    scored = np.nonzero(eps.rewards > 0)[0] + 1  # frame the rewarded transition leads to
    assert len(scored), "the tracker never broke a brick"
    assert (ev[scored] & HIT).all()
    assert int((ev & HIT > 0).sum()) == len(scored)
    assert (ev & BOUNCE).any()  # it had to bounce the ball off the paddle to reach the wall


def test_no_event_crosses_an_episode_boundary(scripted, breakout_file: Path) -> None:
    """Flags of episodes laid back to back equal the flags of each alone, and no first frame has one."""
    eps, fire_at, lives, _ = scripted
    drop = next(i for i in range(1, len(lives)) if lives[i] < lives[i - 1])
    cuts = [fire_at + 3, drop - 4, len(eps.frames) - 8]  # ball in flight, ball just lost, near the end
    frames, rewards, lens, alone = [], [], [], []
    lo = 0
    for hi in [*cuts, len(eps.frames) - 1]:  # piece: frames lo..hi; transition hi -> hi+1 is dropped
        f, r = eps.frames[lo : hi + 1], eps.rewards[lo:hi]
        frames.append(f)
        rewards.append(r)
        lens.append(hi - lo)
        alone.append(frame_events(f, r, np.array([hi - lo])))
        lo = hi + 1
    lens_a = np.array(lens, np.int64)
    together = frame_events(np.concatenate(frames), np.concatenate(rewards), lens_a)
    assert np.array_equal(together, np.concatenate(alone))
    starts = np.cumsum(lens_a + 1) - (lens_a + 1)
    assert (together[starts] == 0).all()

    real = Episodes.load(breakout_file)
    ev = frame_events(real.frames, real.rewards, real.episode_lengths)
    per = [frame_events(e.frames, e.rewards, e.episode_lengths) for e in map(real.episode, range(real.n_episodes))]
    assert np.array_equal(ev, np.concatenate(per)) and (ev[real.frame_offsets] == 0).all()
    with pytest.raises(ValueError, match="do not fit"):
        frame_events(real.frames[:-1], real.rewards, real.episode_lengths)


# ------------------------------------------------------------------------------ storage
def test_token_file_carries_events(tiny_run: Path, breakout_file: Path) -> None:
    toks = Episodes.load(tiny_run / "atari_tokens_hires.npz")
    pix = Episodes.load(breakout_file)
    assert toks.events is not None and toks.events.dtype == np.uint8
    assert np.array_equal(toks.events, frame_events(pix.frames, pix.rewards, pix.episode_lengths))
    assert toks.events.any()
    assert toks.meta["event_bits"] == {"launch": LAUNCH, "lost": LOST, "hit": HIT, "bounce": BOUNCE}


def _tokens(lens: list[int], seed: int = 0, events: bool = True) -> Episodes:
    rng = np.random.default_rng(seed)
    la = np.asarray(lens, np.int64)
    n, m = int(la.sum()), int(la.sum() + len(la))
    return Episodes(frames=None, tokens=rng.integers(0, 32, (m, 21, 16), dtype=np.uint8),
                    actions=rng.integers(0, 4, n).astype(np.uint8), rewards=np.zeros(n, np.float32),
                    dones=np.zeros(n, bool), episode_lengths=la, sources=["random"] * len(la), meta={},
                    events=(rng.random(m) < 0.1).astype(np.uint8) * HIT if events else None)


def test_events_saved_loaded_sliced_and_optional(tmp_path: Path) -> None:
    eps = _tokens([10, 7, 12])
    path = eps.save(tmp_path / "ev.npz")
    back = Episodes.load(path, mmap=True)
    assert back.events is not None and np.array_equal(back.events, eps.events)
    assert np.array_equal(back.episode(1).events, eps.events[11:19])
    assert np.array_equal(back.select([2, 0]).events, np.concatenate([eps.events[19:], eps.events[:11]]))
    # a file written before events existed loads as before
    old = _tokens([10, 7], events=False)
    old_path = old.save(tmp_path / "old.npz")
    assert "events.npy" not in zipfile.ZipFile(old_path).namelist()
    assert Episodes.load(old_path).events is None
    # concat keeps events only when every part has them (a part without is unlabelled, not eventless)
    assert Episodes.concat([back, Episodes.load(old_path)]).events is None
    assert len(Episodes.concat([back, back]).events) == 2 * back.n_frames
    # a bad events array is a one-line DatasetError naming the file
    for bad in (eps.events[:-1], eps.events.astype(np.int16)):
        np.savez(tmp_path / "bad.npz", **{k: v for k, v in np.load(path).items() if k != "events"}, events=bad)
        with pytest.raises(DatasetError, match=r"bad\.npz: 'events' must be 1-D uint8"):
            Episodes.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------ sampling
def _draw_share(s, kind: str, n_batches: int = 8, b: int = 500) -> float:
    s.drawn_stats()
    for step in range(n_batches):
        g = torch.Generator().manual_seed(step)
        if kind == "rollout":
            s.rollout_batch(b, 5, g)
        else:
            s.sequence_batch(b, 6, g)
    return s.drawn_stats()["event_share"]


def _lost_share(s, n_batches: int = 8, b: int = 500) -> float:
    for step in range(n_batches):
        s.rollout_batch(b, 5, torch.Generator().manual_seed(step))
    return s.drawn_stats()["lost_share"]


def test_sampler_draws_event_windows_by_weight(tiny_run: Path) -> None:
    from training.wm_data import TokenSampler

    eps = Episodes.load(tiny_run / "atari_tokens_hires.npz")
    ev = eps.events > 0
    for kind, span in (("rollout", 5), ("sequence", 5)):
        flat = TokenSampler(eps, 0.1, 0, 1.0, event_weight=0.0)
        st = flat._starts("train", span)
        want = np.array([ev[r + 1 : r + span + 1].any() for r in st.rows])  # any event in the targets
        assert np.array_equal(st.event, want)
        p = float(want.mean())
        assert 0.05 < p < 0.9
        assert abs(_draw_share(flat, kind) - p) < 0.03  # 4000 draws: sd < 0.008
        heavy = TokenSampler(eps, 0.1, 0, 1.0, event_weight=4.0)
        expect = 5 * p / (5 * p + 1 - p)
        share = _draw_share(heavy, kind)
        assert share > p + 0.1 and abs(share - expect) < 0.04
        val = heavy._starts("val", span)
        assert val.event is None and bool((val.weights == 1).all())  # val stays uniform
    # lost balls on top: windows with a LOST in the targets get 1 + event_weight + lost_weight (they are events)
    lost = np.array([(eps.events[r + 1 : r + 6] & LOST).any() for r in flat._starts("train", 5).rows])
    q = float(lost.mean())
    assert 0 < q < p  # 6 episodes of 150 steps lose a few balls
    both = TokenSampler(eps, 0.1, 0, 1.0, event_weight=4.0, lost_weight=100.0)
    assert np.array_equal(both._starts("train", 5).lost, lost)
    expect = 105 * q / (105 * q + 5 * (p - q) + (1 - p))
    share = _lost_share(both)
    assert share > 5 * q and abs(share - expect) < 0.04
    none = TokenSampler(eps.replace(events=None), 0.1, 0, 1.0, event_weight=4.0)
    none.rollout_batch(8, 5, torch.Generator().manual_seed(0))
    assert none.drawn_stats() == {}
