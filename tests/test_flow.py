"""The dream's game flow on real ALE games and on doctored dream-like frames: a game over that one stray
reading cannot call off, a ball lost mid-field, a dream that will not serve, and a score that never goes back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuroplay.config import Action
from neuroplay.envs.breakout import ball_mask, detect, read_digit, read_scoreboard
from neuroplay.envs.dream import DreamEnv
from neuroplay.envs.flow import (
    BLEND_FRAMES,
    GAME_OVER_GONE,
    SCORE_TOKENS,
    SERVE_GIVE_UP,
    SERVE_WAIT,
    VANISH_GONE,
    Flow,
    GameFlow,
    ScoreGuard,
    serve_candidates,
)
from neuroplay.envs.players import PLAYERS, ChasePolicy, TrackerPolicy
from neuroplay.envs.real import RealEnv

FIRE, NOOP = int(Action.FIRE), int(Action.NOOP)


def _game(seed: int, player: object) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T+1, ...) and actions (T,) of one real game that `player` plays until ALE says it is over."""
    env = RealEnv(seed=seed)
    frames, actions = [env.reset()], []
    while True:
        actions.append(player.act(frames[-1]))  # type: ignore[attr-defined]
        s = env.step(actions[-1])
        frames.append(s.frame)
        if s.done:
            assert s.info["game_over"] and env.lives == 0
            return np.stack(frames), np.array(actions)


@pytest.fixture(scope="module")
def real_game() -> tuple[np.ndarray, np.ndarray]:
    return _game(0, TrackerPolicy(noise=0.4, seed=0))


def _flow(frames: np.ndarray, actions: np.ndarray | list[int] | None = None) -> list[Flow]:
    flow = GameFlow()
    acts = [None] * len(frames) if actions is None else [None, *actions]
    return [flow.update(f, a) for f, a in zip(frames, acts)]


def _last_sighting(frames: np.ndarray) -> int:
    return max(i for i, f in enumerate(frames) if detect(f).ball_visible)


def _empty(frame: np.ndarray) -> np.ndarray:
    out = frame.copy()
    out[ball_mask(out)] = 0
    return out


@pytest.mark.parametrize("seed,player", [(0, "tracker"), (1, "chaser")])
def test_real_games_end_where_ale_ends_them(seed: int, player: str,
                                            real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """Through every lost ball and serve wait of a real game the flow says play; it calls the game over once
    the last ball is gone, never before ALE does, and within `GAME_OVER_GONE` frames of its last sighting."""
    frames, actions = real_game if player == "tracker" else _game(seed, ChasePolicy(seed, noise=0.15, lag=3))
    flow = GameFlow()
    calls = [flow.update(f, a) for f, a in zip(frames, [None, *actions])]
    assert all(c is Flow.PLAY for c in calls[:-1])
    calls += [flow.update(frames[-1], NOOP) for _ in range(GAME_OVER_GONE)]  # the screen holds, as a dream's
    assert calls.index(Flow.GAME_OVER) - _last_sighting(frames) <= GAME_OVER_GONE


def test_a_stray_blob_after_the_last_ball_does_not_call_the_game_off(real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """One frame after the last ball was seen low, a ball-sized red blob shows high on the screen and is gone
    again: the game still ends (a watch that took it for a served ball hung the dream for good)."""
    frames, _ = real_game
    last = _last_sighting(frames)
    empty = _empty(frames[-1])
    stray = empty.copy()
    stray[44:46, 30] = (200, 72, 72)
    assert detect(stray).ball_visible and detect(stray).ball_y < 60
    calls = _flow(np.stack([*frames[: last + 1], empty, stray, *[empty] * (2 * GAME_OVER_GONE)]))
    assert Flow.GAME_OVER in calls
    assert calls.index(Flow.GAME_OVER) - last <= GAME_OVER_GONE + 2


def test_a_last_ball_that_vanishes_mid_field_ends_the_game(real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """The last ball, high in flight, is gone from the next frame on (a dream that drops it): the game is over
    within `VANISH_GONE` frames, as if it had been lost low."""
    frames, _ = real_game
    served = next(i for i, f in enumerate(frames) if read_digit(f, 3) == 1 and detect(f).ball_visible)
    high = next(i for i in range(served + 2, len(frames)) if (detect(frames[i]).ball_y or 99) < 50
                and detect(frames[i - 1]).ball_visible)
    calls = _flow(np.stack([*frames[: high + 1], *[_empty(frames[high])] * (VANISH_GONE + 2)]))
    assert calls.index(Flow.GAME_OVER) - high == VANISH_GONE
    # the same vanish with lives left is no game over: the next ball is served
    early = next(i for i in range(20, len(frames)) if read_digit(frames[i], 3) == 5 and
                 (detect(frames[i]).ball_y or 99) < 50 and detect(frames[i - 1]).ball_visible)
    assert Flow.GAME_OVER not in _flow(np.stack([*frames[: early + 1], *[_empty(frames[early])] * 30]))


class _Dream:
    """A stand-in for `DreamEngine` that draws one of a few real frames by the code of one token, so what
    `DreamEnv` makes of the model's choices is under test, not a model. `serve_p`: the probability its logits
    give the serve token's ball code (0: the dream never serves)."""

    SERVE_AT = 12 * 16 + 8  # token row 12 (frame rows 48-51), column 8

    def __init__(self, empty: np.ndarray, served: np.ndarray, serve_p: float) -> None:
        self.empty, self.served, self.device, self.token_dtype = empty, served, "cpu", np.uint8
        self.serve_p = serve_p
        self.last_tokens = torch.zeros(336, dtype=torch.long)

    def reset(self, frames: np.ndarray, actions: object = None, seed: int = 0) -> np.ndarray:
        return frames[-1]

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        t = tokens.reshape(-1, 336)
        return np.stack([self.served if int(r[self.SERVE_AT]) == 1 and self.serve_p > 0 else self.empty for r in t])

    def step(self, action: int, revise: object = None) -> SimpleNamespace:
        logits = torch.zeros(336, 4)
        logits[:, 0] = 5.0
        logits[self.SERVE_AT, 1] = 5.0 + float(np.log(self.serve_p / (1 - self.serve_p))) if self.serve_p else -9
        toks = logits.argmax(-1)
        frame = self.decode(toks[None])[0]
        if revise is not None and (r := revise(logits, toks, frame)) is not None:  # type: ignore[operator]
            toks, frame = r
        return SimpleNamespace(frame=frame, tokens=toks.numpy().astype(np.uint8), timings_ms={"total": 0.0},
                               changed_tokens=0)


def _serve_frames(real_game: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real history with lives 5 just after the first ball was lost, its ball-less screen, and the frame of
    the next serve (a ball in the serve rows)."""
    frames, _ = real_game
    first_lost = next(i for i, f in enumerate(frames) if read_digit(f, 3) == 4)
    served = next(i for i in range(first_lost, len(frames)) if detect(frames[i]).ball_visible)
    empty = _empty(frames[first_lost - 1])
    return np.stack([empty] * 4), empty, frames[served]


@pytest.mark.parametrize("serve_p", [0.2, 0.0])
def test_a_dream_that_will_not_serve_moves_on(serve_p: float, real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """FIRE held on an empty screen with lives left: where the model gives a serve any odds, the dream takes
    its most likely serve once the real game's wait is over; where it gives none, the game ends as stalled
    (a new game), never more than 16 FIRE presses in."""
    history, empty, served = _serve_frames(real_game)
    env = DreamEnv(_Dream(empty, served, serve_p))  # type: ignore[arg-type]
    env.reset(history)
    steps = [env.step(FIRE) for _ in range(16)]
    shown = [detect(s.frame).ball_visible for s in steps]
    if serve_p:
        first = shown.index(True)
        assert first == SERVE_WAIT and steps[first].info["served"] and not any(s.done for s in steps[: first + 1])
    else:
        assert not any(shown)
        end = next(i for i, s in enumerate(steps) if s.done)
        assert end == SERVE_GIVE_UP - 1 and steps[end].info["stalled"] and not steps[end].info["game_over"]


def test_no_serve_is_taken_before_the_real_game_would_serve(real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """Without FIRE the dream waits as long as the player does; the flow never counts NOOPs."""
    history, empty, served = _serve_frames(real_game)
    env = DreamEnv(_Dream(empty, served, 0.2))  # type: ignore[arg-type]
    env.reset(history)
    steps = [env.step(NOOP) for _ in range(60)]
    assert not any(s.done or s.info["served"] or detect(s.frame).ball_visible for s in steps)


def test_serve_candidates_change_one_token_each_to_the_models_next_choice() -> None:
    logits = torch.zeros(336, 6)
    logits[:, 2] = 4.0
    logits[200, 5] = 3.9  # row 12: the model nearly serves here
    logits[20, 5] = 4.0  # row 1, the scoreboard: never a serve
    toks = torch.full((336,), 2)
    c = serve_candidates(logits, toks, k=3)
    assert c.shape == (3, 336)
    assert (c != toks).sum(1).tolist() == [1, 1, 1]
    assert int(c[0, 200]) == 5 and (c[:, 20] == 2).all()


def test_the_score_never_goes_back(real_game: tuple[np.ndarray, np.ndarray]) -> None:
    """Real frames with scores 0, a higher one and back down: the guard lets the rise through and keeps the
    scoreboard's tokens where the new score reads lower, or does not read."""
    frames, _ = real_game
    scores = [read_scoreboard(f).score for f in frames]
    lo = 0
    hi = next(i for i, s in enumerate(scores) if s is not None and 0 < s <= 7)
    blurred = frames[hi].copy()
    blurred[2:6, 27:32] = 90  # the units digit a blend
    by_code = {0: frames[lo], 1: frames[hi], 2: blurred}
    guard = ScoreGuard()
    toks0 = torch.zeros(336, dtype=torch.long)
    guard.reset(frames[lo], toks0)

    def grid(code: int) -> torch.Tensor:
        t = toks0.clone()
        t[SCORE_TOKENS] = code
        return t

    assert guard.check(by_code[1], grid(1)) is None  # a rise shows, and is the score once it reads twice
    assert guard.check(by_code[1], grid(1)) is None and guard.score == scores[hi]
    kept = guard.check(by_code[0], grid(0))  # back down: the risen score's tokens stay
    assert kept is not None and (kept[SCORE_TOKENS] == 1).all()
    rest = np.setdiff1d(np.arange(336), SCORE_TOKENS)
    assert (kept[rest] == 0).all()
    assert guard.check(by_code[1], grid(1)) is None  # the shown score again
    blends = [guard.check(by_code[2], grid(2)) for _ in range(BLEND_FRAMES + 1)]  # a blend passes, then stays
    assert all(b is None for b in blends[:-1]) and blends[-1] is not None and (blends[-1][SCORE_TOKENS] == 1).all()
    assert guard.score == scores[hi]


def test_every_player_plays_the_real_game() -> None:
    """Each soak player moves, fires and loses balls in ALE; the unhurried one leaves a lost ball unserved."""
    for name, make in PLAYERS.items():
        env, player = RealEnv(seed=3), make(3)
        frame, acts = env.reset(), []
        for _ in range(300):
            acts.append(player.act(frame))
            frame = env.step(acts[-1]).frame
        assert set(acts) <= {0, 1, 2, 3} and len(set(acts)) >= 3, name
