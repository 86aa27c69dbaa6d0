"""The dream's game flow, read off its frames: when the game is over, when the dream owes a serve, and a
scoreboard that never goes back.

The world model predicts pixels only. The real game's flow lives in its hidden state (a lost ball, a serve
timer, the lives left), so the dream must be read as a player reads it, and a reading must not hang on one
stray frame: a ball counts once it is seen in two frames in a row, near each other, and the lives digit
once it reads the same twice. Where the model will not serve under FIRE for longer than the real game ever
takes, `DreamEnv` takes the serve the model itself finds most likely (`serve_candidates`), and where even
that fails it starts a new game. Nothing here draws pixels: every frame stays the model's tokens, decoded.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import torch

from neuroplay.config import TOKEN_W, Action
from neuroplay.envs.breakout import MAX_LIVES, detect, read_digit, read_scoreboard
from neuroplay.envs.events import LOW_Y

BALL_STEP_MAX = 8.0
"""Pixels (on either axis) a ball moves between two frames at most: real play's largest step is 6.6."""
GAME_OVER_GONE = 8
"""Frames without a ball, after the last ball was seen low, at which the game is over: ALE ends it 2-8 frames
after that last sighting (4 players, 16 games each). The longest, so the dream never ends a game the real one
would still be playing."""
VANISH_GONE = 8
"""Frames a ball last seen high may be gone before the last ball counts as lost: a ball in the brick wall is
unseen for up to 5 frames in real play; a dream's ball that vanishes mid-field is lost here."""
SERVE_WAIT = 8
"""FIRE presses without a ball after which the dream owes a serve: in the real game at most 7 come before the
serve (its 5-8 frame lost-ball timer, and a ball hidden for a frame or two; 4 players, 96,000 steps)."""
SERVE_GIVE_UP = 15
"""FIRE presses without a ball after which the dream, having refused even its most likely serve, starts a new
game: a player never holds FIRE for more than 16 steps in front of an empty screen."""
SERVE_ROWS = (36.0, 72.0)
"""Rows a served ball may first be seen in: the real serve shows at row 50, below the wall."""
MAX_RISE = 14
"""Points the score may rise in one frame: two of the top rows' 7-point bricks."""
BLEND_FRAMES = 4
"""Frames in a row the score may not read while it changes: the real game blends a digit for one frame, the
model for 2-4. Held back from every blend, the model sees its old score again and never makes the rise."""


class Flow(Enum):
    """What the game-flow watch says after a frame."""

    PLAY = "play"
    """Play on."""
    GAME_OVER = "game_over"
    """The last ball is lost: the game is over, as the real one ends."""
    STALLED = "stalled"
    """FIRE has been pressed `SERVE_GIVE_UP` times with no ball, even after the dream was nudged to serve."""


class GameFlow:
    """Reads a game's flow from its frames in order, with the action that made each: the lives left, whether
    a ball is in play, and how often FIRE was pressed for a serve that did not come.

    Fed every frame; `update` says whether the game goes on, and `serve_due` whether the next FIRE should be
    given the dream's most likely serve."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.lives: int | None = None
        """The lives digit (1..`MAX_LIVES`), once it read the same in two frames in a row."""
        self._digit: int | None = None
        self.last_served = False
        """A ball was seen high on the screen while the digit read 1: the last ball is in play."""
        self.last_low = False
        """When a ball was last seen: it was low on the screen."""
        self.gone = 0
        """Frames since a ball was last seen (in two frames in a row)."""
        self.unserved_fire = 0
        """FIRE presses since a ball was last seen."""
        self._sighting: tuple[float, float] | None = None

    def update(self, frame: np.ndarray, action: int | None = None) -> Flow:
        """Read one frame (the one `action` led to; None: a history frame) and say what follows."""
        d = read_digit(frame, 3)
        if d is not None and 1 <= d <= MAX_LIVES:
            if d == self._digit and d != self.lives:
                self.last_served &= d == 1
                self.lives = d
            self._digit = d
        obj = detect(frame)
        now = (obj.ball_x, obj.ball_y) if obj.ball_x is not None and obj.ball_y is not None else None
        before, self._sighting = self._sighting, now
        if now is not None and before is not None and max(abs(now[0] - before[0]),
                                                          abs(now[1] - before[1])) <= BALL_STEP_MAX:
            low = now[1] >= LOW_Y
            self.gone, self.unserved_fire, self.last_low = 0, 0, low
            self.last_served |= self.lives == 1 and not low
            return Flow.PLAY
        self.gone += 1
        self.unserved_fire += action == Action.FIRE
        if self.last_ball_out:
            return Flow.GAME_OVER
        return Flow.STALLED if self.unserved_fire >= SERVE_GIVE_UP else Flow.PLAY

    @property
    def last_ball_out(self) -> bool:
        """The last ball was in play and is gone for good."""
        return self.lives == 1 and self.last_served and (
            (self.last_low and self.gone >= GAME_OVER_GONE) or self.gone >= VANISH_GONE)

    @property
    def serve_due(self) -> bool:
        """FIRE has waited longer than the real game ever makes it wait, and a ball is still owed."""
        return self.unserved_fire >= SERVE_WAIT and not (self.lives == 1 and self.last_served)


SERVE_CANDIDATES = 8
"""Serves tried (decoded in one batch) when the dream owes one."""


def serve_candidates(logits: torch.Tensor, tokens: torch.Tensor, k: int = SERVE_CANDIDATES) -> torch.Tensor:
    """The dream's `k` most likely serves: logits (N, V) and the frame's tokens (N,) -> candidates (k, N).

    Each candidate changes one token of the serve rows, the one the model is least sure stays as it is, to
    the code it finds most likely there after the current one: where the model, unsure whether to serve,
    would put the ball."""
    n = logits.shape[0]
    p = logits.float().softmax(-1)  # (N, V)
    stay = p.gather(-1, tokens.long()[:, None])[:, 0]  # (N,)
    rows = torch.arange(n, device=logits.device) // TOKEN_W
    lo, hi = int(SERVE_ROWS[0]) // 4, int(SERVE_ROWS[1]) // 4
    stay = torch.where((rows >= lo) & (rows < hi), stay, torch.full_like(stay, 2.0))  # elsewhere: never
    where = stay.argsort()[:k]  # (k,)
    other = p[where].scatter(-1, tokens.long()[where, None], -1.0).argmax(-1)  # (k,): best code but the current
    out = tokens.long().repeat(len(where), 1)  # (k, N)
    out[torch.arange(len(where)), where] = other
    return out


def one_ball_served(frame: np.ndarray) -> bool:
    """The frame shows a single ball in the serve rows, and the paddle."""
    o = detect(frame)
    return (o.n_balls == 1 and o.paddle_x is not None and o.ball_y is not None
            and SERVE_ROWS[0] <= o.ball_y < SERVE_ROWS[1])


SCORE_TOKENS = np.array([r * TOKEN_W + c for r in (0, 1, 2) for c in range(0, 9)])
"""Token indices that draw the three score digits and what surrounds them (frame rows 0-11, columns 0-35): the
digits sit in rows 2-5, columns 14-31, and the decoder draws each pixel from its neighbours' tokens too. The
lives digit (columns 40-44) stays the model's."""


class ScoreGuard:
    """The scoreboard never goes back: the dream's score tokens may change to a score that reads in two frames
    in a row, no lower than the score shown and at most `MAX_RISE` above it, or pass through a blend for up to
    `BLEND_FRAMES` frames on the way; otherwise the score tokens shown last stay.

    The model blends a changing digit's tokens over a few frames and sometimes settles on a lower value, or on
    a blend: the player sees the score rise as the model draws it, and never fall."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, frame: np.ndarray | None = None, tokens: np.ndarray | torch.Tensor | None = None) -> None:
        """Start from a frame (its score, if it reads) and its tokens; nothing: the next readable score."""
        self.score: int | None = None
        """The score shown."""
        self.held: torch.Tensor | None = None
        """(len(SCORE_TOKENS),) the tokens that drew it."""
        self.blended = 0
        """Frames in a row the score has not read as one it may show."""
        self.pending: int | None = None
        """A higher score read in the last frame, shown once it reads again."""
        if frame is not None and tokens is not None:
            self.score = read_scoreboard(frame).score
            if self.score is not None:
                self.held = torch.as_tensor(np.asarray(tokens)).reshape(-1)[SCORE_TOKENS].long().clone()

    def check(self, frame: np.ndarray, tokens: torch.Tensor) -> torch.Tensor | None:
        """Tokens (N,) of a new frame -> None if its score may show, else the tokens with the shown score's."""
        idx = torch.as_tensor(SCORE_TOKENS, device=tokens.device)
        if self.held is not None and bool((tokens[idx] == self.held.to(tokens.device)).all()):
            self.blended = 0
            return None
        s = read_scoreboard(frame).score
        if s is not None and (self.score is None or self.score <= s <= self.score + MAX_RISE):
            if s == self.score or s == self.pending:  # a new score must read twice: a blend can read as a digit
                self.score, self.held, self.blended, self.pending = s, tokens[idx].long().clone(), 0, None
                return None
            self.pending = s
            s = None
        else:
            self.pending = None
        self.blended = self.blended + 1 if s is None else BLEND_FRAMES + 1
        if self.held is None or self.blended <= BLEND_FRAMES:  # nothing readable shown yet, or a blend passing
            return None
        out = tokens.clone()
        out[idx] = self.held.to(tokens.device, tokens.dtype)
        return out
