"""The one small interface every world model answers, so that play's engine, the evaluation and the bench step
any of them alike (IRIS's `WorldModelEnv` idea: the dream is driven through the model, never around it).

- `start(frames, actions)` -> `DreamState`; `advance(state, tokens, action)`; `prepare(state)` (the work that
  needs no key); `next_logits(state, action)` -> `WorldModelOutput`;
- `forward_sequence(frames, actions, steps=)`: the 1-step logits of many consecutive frames at once;
- `context_frames`: how far back a prediction can see; `clip_training`: which batches train it.

`DreamModel` gives all of it to a model that reads a fixed window of frames through `forward` (the reference
design's full attention, and the tests' hand-written models); block-causal models override it with their KV
cache and one-pass sequences (`neuroplay.models.world_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from neuroplay.models.cache import DreamState


@dataclass
class WorldModelOutput:
    """Logits for the next frame's tokens."""

    logits: torch.Tensor
    """(B, 336, V) for one step, (B, T, 336, V) for a sequence."""


class DreamModel(nn.Module):
    """A world model read through a window of `window` frames: `forward(history (B, w, 336), action (B,))`, or
    with `history_actions` (B, w-1) where `takes_history_actions` says it reads them."""

    window: int = 4
    """Frames the forward reads."""
    takes_history_actions: bool = False
    """Whether `forward` takes `history_actions`, the actions taken at the history frames but the last."""

    @property
    def context_frames(self) -> int:
        """Frames before the newest that a prediction can depend on."""
        return self.window - 1

    @property
    def clip_training(self) -> bool:
        """Whether one pass over a clip trains a target for every frame; otherwise training draws one-step
        samples of `window` frames."""
        return False

    def window_logits(self, history: torch.Tensor, history_actions: torch.Tensor,
                      action: torch.Tensor) -> WorldModelOutput:
        """The forward on a window: history (B, w, 336), history_actions (B, w-1), action (B,)."""
        if self.takes_history_actions:
            return self(history, action, history_actions=history_actions)
        return self(history, action)

    def start(self, frames: torch.Tensor, actions: torch.Tensor | None = None, one_by_one: bool = False,
              cached: bool = True) -> DreamState:
        """Dreams from history frames (B, T, 336), `actions` (B, T-1) the actions taken at all frames but the
        last (default NOOP). A short start repeats its first frame, as the training windows at an episode's
        start do. `one_by_one` and `cached` matter only to models with a cache (see their `start`)."""
        b, t, _ = frames.shape
        w = self.window
        acts = actions.long() if actions is not None else frames.new_zeros(b, t - 1)
        if t < w:
            frames = torch.cat([frames[:, :1].expand(-1, w - t, -1), frames], 1)  # (B, w, 336)
            acts = torch.cat([acts.new_zeros(b, w - t), acts], 1)  # (B, w-1)
        return DreamState(history=frames[:, -w:], history_actions=acts[:, acts.shape[1] - (w - 1) :],
                          last_tokens=frames[:, -1])

    def prepare(self, state: DreamState) -> None:
        """Take in the frame `advance` stored (a model with a cache runs its pass here). No-op when none is."""
        if state.pending is None:
            return
        assert state.history is not None and state.history_actions is not None and state.pending_action is not None
        state.history = torch.cat([state.history[:, 1:], state.pending[:, None]], 1)  # roll: (B, w, 336)
        state.history_actions = torch.cat([state.history_actions[:, 1:], state.pending_action[:, None].long()], 1)
        state.pending = state.pending_action = None

    def next_logits(self, state: DreamState, action: torch.Tensor) -> WorldModelOutput:
        """Logits (B, 336, V) of the frame after the newest under `action` (B,); any number of actions may be
        asked before the next `advance` (the probes' what-if branches)."""
        self.prepare(state)
        assert state.history is not None and state.history_actions is not None
        return self.window_logits(state.history, state.history_actions, action)

    def advance(self, state: DreamState, tokens: torch.Tensor, action: torch.Tensor) -> None:
        """The dreams move on to frame `tokens` (B, 336), reached under `action` (B,) from the newest frame. Its
        pass waits for `prepare` (or the next `next_logits`)."""
        self.prepare(state)
        state.pending, state.pending_action, state.last_tokens = tokens, action, tokens

    def forward_sequence(self, frames: torch.Tensor, actions: torch.Tensor, last_only: bool = False,
                         steps: torch.Tensor | None = None) -> WorldModelOutput:
        """1-step logits over n frames (B, n, 336) under `actions` (B, n-1): (B, n-1, 336, V), step t predicting
        frame t+1 from the window ending at t (frame 0 repeated before the start); only `steps` (k,) when given.
        `last_only` is accepted for the cached models' signature and means steps = [n-2]."""
        b, n, _ = frames.shape
        w = self.window
        ks = torch.tensor([n - 2]) if last_only else steps.cpu() if steps is not None else torch.arange(n - 1)
        idx = (ks[:, None] - (w - 1) + torch.arange(w)).clamp(min=0).to(frames.device)  # (k, w) frame indices
        hist = frames[:, idx].flatten(0, 1)  # (B*k, w, 336)
        acts = torch.cat([actions.new_zeros(b, 1), actions.long()], 1)  # (B, n): action taken at frame i is acts[i+1]
        h_act = acts[:, idx[:, 1:]].flatten(0, 1)  # (B*k, w-1): taken at history frames but the last (NOOP at 0)
        a = actions.long()[:, ks.to(frames.device)].reshape(-1)  # (B*k,)
        lg = self.window_logits(hist, h_act, a).logits  # (B*k, 336, V)
        return WorldModelOutput(lg.view(b, len(ks), *lg.shape[1:]))
