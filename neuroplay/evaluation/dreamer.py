"""Open-loop dreaming of a batch for the evaluation: `Dreamer` steps it, `rollout` runs it for H steps.

Block-causal models (lite, lite2) go through their KV cache, one frame pass per step; any other model gets
its 4-frame forward on a rolled history. The play engine (`neuroplay.engine`) does the same for one dream.
"""

from __future__ import annotations

from typing import Any

import torch

from neuroplay.models.decoding import TokenDecoder


class Dreamer:
    """Open-loop stepping of a batch of dreams: `logits(action)` for the current state, `push(tokens)` advances.

    Uses the KV cache of block-causal models (one frame pass per step); any other model gets its 4-frame
    forward on a rolled history. `logits` may be asked for several actions before a push.

    Fused models (lite2) condition every frame on the action taken at it: `history_actions` (B, T-1) for the
    history frames but the last (default NOOP: right for a game's first frames, an approximation elsewhere;
    pass the recorded actions where known), and `push(tokens, action)` the action the pushed frame was dreamed
    under (default: the action of the first `logits` call since the last push, the step's own; later calls are
    what-ifs such as the LEFT/RIGHT sensitivity probe).
    """

    def __init__(self, wm: Any, history: torch.Tensor, use_cache: bool | None = None,
                 history_actions: torch.Tensor | None = None) -> None:
        self.wm = wm
        self.cached = bool(getattr(wm, "block_causal", False)) if use_cache is None else use_cache
        self.fused = bool(getattr(wm, "fused", False))
        self.hist = history
        b, t = history.shape[:2]
        self.hist_actions = (torch.zeros(b, t - 1, dtype=torch.long, device=history.device)  # (B, T-1) NOOP
                             if history_actions is None else history_actions.long())
        self._step_action: torch.Tensor | None = None
        if self.cached:
            self.cache = wm.new_cache()
            for i in range(t):
                if self.fused and i < t - 1:
                    wm.observe(self.cache, history[:, i], self.hist_actions[:, i])
                else:
                    wm.push_frame(self.cache, history[:, i])

    def logits(self, action: torch.Tensor) -> torch.Tensor:
        """(B, 336, V) float logits of the next frame under `action` (B,)."""
        if self._step_action is None:
            self._step_action = action
        if self.cached:
            out = self.wm.query(self.cache, action)
        elif self.fused:
            out = self.wm(self.hist, action, history_actions=self.hist_actions)
        else:
            out = self.wm(self.hist, action)
        return out.logits.float()

    def push(self, tokens: torch.Tensor, action: torch.Tensor | None = None) -> None:
        """Advance by the frame `tokens` (B, 336), dreamed under `action` (B,) (fused models; see the class)."""
        a = self._step_action if action is None else action
        self._step_action = None
        if self.fused and a is None:
            raise ValueError("Dreamer.push: a fused model needs the action the pushed frame was dreamed under")
        if self.cached:
            if self.fused:
                self.wm.push_frame(self.cache, tokens, a)
            else:
                self.wm.push_frame(self.cache, tokens)
        else:
            self.hist = torch.cat([self.hist[:, 1:], tokens[:, None]], 1)
            if self.fused:
                assert a is not None
                self.hist_actions = torch.cat([self.hist_actions[:, 1:], a[:, None].long()], 1)  # (B, T-1)


def rollout(wm: Any, history: torch.Tensor, actions: torch.Tensor, use_cache: bool | None = None,
            history_actions: torch.Tensor | None = None, decoder: TokenDecoder | None = None) -> torch.Tensor:
    """Open-loop dream: history (B, 4, 336), actions (B, H) -> predicted tokens (B, H, 336).

    `history_actions` (B, 3): the actions taken at the history frames but the last (fused models; see Dreamer).
    `decoder`: how tokens are drawn (play's decoder, `neuroplay.models.decoding`); None: argmax.
    """
    d, preds = Dreamer(wm, history, use_cache, history_actions), []
    prev = history[:, -1]
    for k in range(actions.shape[1]):
        if k:
            d.push(preds[-1], actions[:, k - 1])
        lg = d.logits(actions[:, k])
        preds.append(lg.argmax(-1) if decoder is None else decoder(lg, prev))
        prev = preds[-1]
    return torch.stack(preds, 1)
