"""The dream: Breakout as the world model imagines it, behind the same `reset`/`step` as `RealEnv`.

IRIS's `WorldModelEnv` pattern: `reset` is given (or fetches) a few *real* frames as the starting
history, and from then on every frame is the model's own argmax/sampled tokens decoded by the VQ-VAE.
The game UI, the autopilot and the tests treat a `DreamEnv` and a `RealEnv` the same way; the dream's
`info` adds what only it has (model timings, the token-change drift signal, the tokens themselves).
The model predicts no reward and no game over, so `reward` is 0, and `done` marks `max_steps`, the game over
that the screen shows (the last ball lost, as the real game ends), or a dream that would not serve
(`envs/flow.py`). The flow rules choose among the model's own tokens only: a serve the model finds most
likely where it owes one, and the scoreboard's last tokens where its new score would read lower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroplay.config import HISTORY, Action
from neuroplay.engine import DreamEngine, Revised
from neuroplay.envs.breakout import detect
from neuroplay.envs.flow import SERVE_CANDIDATES, Flow, GameFlow, ScoreGuard, one_ball_served, serve_candidates
from neuroplay.envs.real import MAX_EPISODE_STEPS, EnvStep, RealEnv
from neuroplay.models.decoding import DecodeConfig


def real_history(seed: int = 0, n: int = HISTORY, actions: list[int] | None = None) -> np.ndarray:
    """`n` consecutive real frames from a fresh emulator: the reset frame, then `actions` (default NOOP).

    This is the dream's default starting point: it is exactly the kind of history the model was
    trained on, and it needs no bundled assets (the ROM ships inside ale-py).
    """
    env = RealEnv(seed=seed)
    frames = [env.reset()]
    acts = list(actions or [])
    while len(frames) < n:
        frames.append(env.step(acts[len(frames) - 1] if len(frames) - 1 < len(acts) else 0).frame)
    return np.stack(frames)


class DreamEnv:
    """A `DreamEngine` wrapped as an environment: `reset(frames) -> frame`, `step(action) -> EnvStep`."""

    def __init__(self, engine: DreamEngine, seed: int = 0, max_steps: int = MAX_EPISODE_STEPS) -> None:
        self.engine = engine
        self.seed = seed
        self.max_steps = max_steps
        self.t = 0
        self.flow = GameFlow()
        """Ends the dreamed game as the real one ends (info "game_over"), owes a serve under FIRE, and gives up
        on a dream that will not serve (info "stalled")."""
        self.score = ScoreGuard()
        """Keeps the scoreboard from going back."""
        self._batch_warm = False
        self.frame: np.ndarray | None = None
        self.tokens: np.ndarray | None = None
        """(336,) tokens of the current frame (what the model will condition on next)."""

    @classmethod
    def from_checkpoint(cls, run_dir: str | Path, device: str = "auto", decode: DecodeConfig = DecodeConfig(),
                        seed: int = 0, compile: bool = False, **kw: Any) -> DreamEnv:
        """Load `<run_dir>/vqvae` + `<run_dir>/wm` (raises `CheckpointError` with a one-line message)."""
        engine = DreamEngine.from_checkpoint(run_dir, device=device, decode=decode, seed=seed, compile=compile)
        return cls(engine, seed=seed, **kw)

    def reset(self, frames: np.ndarray | None = None, tokens: np.ndarray | None = None,
              seed: int | None = None, actions: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Start dreaming from real frames (T, 84, 64, 3) or tokens (T, 336 | 21, 16); default: a fresh
        emulator's first frames. `actions` (up to T-1): those taken at the history frames but the last, for
        fused models (default NOOP, as in the fresh emulator's warm-up). Returns the last history frame as
        the VQ-VAE sees it (decoded)."""
        if seed is not None:
            self.seed = seed
        if tokens is not None:
            toks = np.asarray(tokens).reshape(len(tokens), -1)
            self.frame = self.engine.reset(tokens=toks, actions=actions, seed=self.seed)
            self.tokens = toks[-1].astype(self.engine.token_dtype)
        else:
            if frames is None:
                frames = real_history(self.seed)
            frames = np.array(frames, dtype=np.uint8)  # a copy: torch refuses read-only (memory-mapped) arrays
            if frames.ndim == 3:
                frames = frames[None]
            self.frame = self.engine.reset(frames, actions=actions, seed=self.seed)
            assert self.engine.last_tokens is not None
            self.tokens = self.engine.last_tokens.to("cpu").numpy().astype(self.engine.token_dtype)
        self.t = 0
        self.flow.reset()
        if tokens is None:
            history = list(frames)
        else:  # the last frame is decoded already; decode the rest of the window only
            before = np.asarray(tokens)[-HISTORY:-1]
            history = [*(self.decode(before) if len(before) else []), self.frame]
        for f in history:
            self.flow.update(np.asarray(f))  # the history's ball and lives, so a game that ends now ends
        self.score.reset(self.frame, self.tokens)
        if not self._batch_warm:  # the serve's batched decode sets up its kernels now, not in the middle of play
            self.decode(np.zeros((SERVE_CANDIDATES, len(self.tokens)), self.engine.token_dtype))
            self._batch_warm = True
        return self.frame

    def prepare(self) -> float:
        """Run the action-independent part of the next step now (while the player decides); ms."""
        return self.engine.prepare()

    def step(self, action: int) -> EnvStep:
        if self.frame is None:
            raise RuntimeError("call reset() before step()")
        if not 0 <= int(action) < 4:
            raise ValueError(f"action must be 0..3, got {action}")
        made: dict[str, bool] = {"served": False, "score_held": False}

        def revise(logits: torch.Tensor, toks: torch.Tensor, frame: np.ndarray) -> Revised:
            held = self.score.check(frame, toks)
            toks = toks if held is None else held
            made["score_held"] = held is not None
            if action == Action.FIRE and self.flow.serve_due and not detect(frame).ball_visible:
                cands = serve_candidates(logits, toks)  # (k, 336)
                for c, f in zip(cands, self.engine.decode(cands)):
                    if one_ball_served(f):
                        made["served"] = True
                        return c, f
            return None if held is None else (toks, self.engine.decode(toks[None])[0])

        s = self.engine.step(int(action), revise)
        self.frame, self.tokens = s.frame, s.tokens
        self.t += 1
        flow = self.flow.update(s.frame, int(action))
        over = flow is Flow.GAME_OVER
        done = flow is not Flow.PLAY or self.t >= self.max_steps
        return EnvStep(s.frame, 0.0, done, {"t": self.t, "timings_ms": s.timings_ms,
                                             "changed_tokens": s.changed_tokens, "tokens": s.tokens,
                                             "game_over": over, "stalled": flow is Flow.STALLED,
                                             "truncated": done and flow is Flow.PLAY, **made})

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Real frames (T, 84, 64, 3) -> (T, 336) uint8 tokens of this dream's VQ-VAE."""
        return self.engine.encode(frames).to("cpu").numpy().astype(np.uint8)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (T, 336 | 21, 16) -> frames (T, 84, 64, 3) uint8."""
        import torch

        t = torch.as_tensor(np.asarray(tokens, np.int64).reshape(len(tokens), -1), device=self.engine.device)
        return self.engine.decode(t)
