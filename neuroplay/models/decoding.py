"""How a dreamed frame's tokens are chosen from the world model's logits.

Breakout is deterministic given the full emulator state, but not given 4 frames: after a lost ball the
serve comes 0-7 steps after FIRE, by a timer the history cannot see. From the model's side such events are
random, and three ways of reading its logits fail in three ways:

- `argmax` never shows an event the model gives less than even odds: the serve never comes, and an
  uncertain ball is dropped (a 2-token ball that each of its tokens gives 40% vanishes);
- `change` is argmax asked in two steps: does the token change (the odds of every code but the previous
  frame's, added up, against the odds that it stays), and if it does, to which code. A ball's new position is
  one event spread over many codes (the ball at each offset in the patch, over each background); argmax over
  codes lets the background win against each of them alone, `change` lets the event win as a whole. It is
  deterministic, and the same as argmax wherever one code holds more than half the odds;
- `sample` (every token drawn on its own) shows events at the right rate per token, but a ball of two tokens
  appears half-drawn, and every token the model is 95% sure of flickers once every 20 frames: with 336 tokens
  a frame, something flickers in almost every frame;
- `coupled` keeps what the model is sure of and draws the rest *together*. Tokens whose top
  probability is at least `confident` take their argmax. The others share one uniform number u per frame
  and take the code whose interval holds u, with the codes ordered "the token the previous frame had here"
  first and then by falling probability. So each uncertain token still changes with exactly the model's
  probability (u is uniform), but the changes of one frame happen together: when u is large the ball's new
  tokens appear and its old ones clear in the same frame, and when u is small nothing moves. This is the
  comonotone coupling of the per-token distributions, the one that makes a frame's changes most
  consistent with each other while keeping every token's odds.

One decoder object serves play (`DreamEngine`), eval rollouts and probes, so they show the same dream. The
default is argmax, chosen by measurement: with the `next` world model (lite2, step 750) coupled at 0.9 drew
so many of its uncertain tokens that the dream got worse on every figure (docs/evaluation.md, "Decoding the dream").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuroplay.config import ARGMAX, DecodeConfig, DecodeMode

__all__ = ["ARGMAX", "DecodeConfig", "DecodeMode", "TokenDecoder", "change_first", "coupled_draw"]


class TokenDecoder:
    """Draws a frame's tokens from logits with a `DecodeConfig` and its own seeded generator."""

    def __init__(self, cfg: DecodeConfig = DecodeConfig(), seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.generator = torch.Generator(device=torch.device(device)).manual_seed(seed)

    def __call__(self, logits: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """logits (..., N, V) -> tokens (..., N) long; `prev` (..., N): the previous frame's tokens (coupled)."""
        if self.cfg.mode == "argmax":
            return logits.argmax(-1)
        if self.cfg.mode == "change":
            return change_first(logits, prev)
        p = F.softmax(logits.float() / self.cfg.temperature, -1)
        if self.cfg.mode == "sample":
            flat = p.reshape(-1, p.shape[-1])  # (rows*N, V)
            return torch.multinomial(flat, 1, generator=self.generator).view(p.shape[:-1])
        return coupled_draw(p, prev, self.cfg.confident, self.generator)


def change_first(logits: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    """logits (..., N, V), previous tokens (..., N) -> tokens (..., N): the previous code unless the other codes
    together are more likely, else the most likely other code. Without `prev` it is argmax."""
    if prev is None:
        return logits.argmax(-1)
    prev = prev.long().unsqueeze(-1)  # (..., N, 1)
    stay = F.softmax(logits.float(), -1).gather(-1, prev).squeeze(-1)  # (..., N)
    other = logits.scatter(-1, prev, float("-inf")).argmax(-1)  # (..., N): the best code that is a change
    return torch.where(stay >= 0.5, prev.squeeze(-1), other)


def coupled_draw(p: torch.Tensor, prev: torch.Tensor | None, confident: float,
                 generator: torch.Generator | None = None, u: torch.Tensor | None = None) -> torch.Tensor:
    """The coupled decoder on probabilities p (..., N, V); one uniform per frame (`u` (...,) to fix it).

    Returns tokens (..., N). Tokens with max p >= `confident` take the argmax; the others take the code whose
    cumulative interval holds u, codes ordered previous-token first, then by falling probability.
    """
    lead, v = p.shape[:-2], p.shape[-1]
    if u is None:
        u = torch.rand(lead, generator=generator, device=p.device)
    top, best = p.max(-1)  # (..., N)
    rest = p
    first = torch.zeros_like(top)  # probability of the code tried first (the previous token's)
    if prev is not None:
        prev = prev.long().unsqueeze(-1)  # (..., N, 1)
        first = p.gather(-1, prev).squeeze(-1)
        rest = p.scatter(-1, prev, 0.0)  # the previous code leaves the sorted tail
    qs, qi = rest.sort(-1, descending=True)  # (..., N, V)
    cum = first.unsqueeze(-1) + qs.cumsum(-1)  # (..., N, V): right ends of the tail's intervals
    uu = u.reshape(*lead, 1, 1).to(p.dtype)  # (..., 1, 1)
    j = (cum <= uu).sum(-1, keepdim=True).clamp(max=v - 1)  # first tail interval that holds u
    drawn = qi.gather(-1, j).squeeze(-1)
    if prev is not None:
        drawn = torch.where(u.reshape(*lead, 1).to(p.dtype) < first, prev.squeeze(-1), drawn)
    return torch.where(top >= confident, best, drawn)
