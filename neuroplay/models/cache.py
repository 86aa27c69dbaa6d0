"""What a dream carries from frame to frame: the block-causal models' KV cache, and `DreamState`, the one handle
the engine, the evaluation and the bench step a dream with. A leaf: it imports no other model module.

Also the attention helpers the world model's passes share (rotary time, frame windows), so that the modules
computing them (`world_model`, `fused`, `framepass`) never reach into each other's private names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange


@dataclass
class PendingFrame:
    """The newest frame of a fused cache: pushed, its action not yet committed."""

    x: torch.Tensor
    """(B, 1, 336, d): the stream at the input of block `action_layer` (before the action)."""
    pos: torch.Tensor
    """(1,) the frame's time (rotary position)."""
    keys: list[torch.Tensor] = field(default_factory=list)
    """Lower layers' keys (B, heads, 336, e), computed at push."""
    values: list[torch.Tensor] = field(default_factory=list)
    """Lower layers' values, as `keys`."""
    action: torch.Tensor | None = None
    """(B,) the action of the last `query`, whose upper-layer keys/values are kept below."""
    upper_keys: list[torch.Tensor] = field(default_factory=list)
    """Keys of the layers >= action_layer under `action`."""
    upper_values: list[torch.Tensor] = field(default_factory=list)
    """Values of the layers >= action_layer under `action`."""

    def tile(self, k: int) -> PendingFrame:
        """k copies of the batch, copy-major (see `KVCache.tile`)."""
        return PendingFrame(_rep(self.x, k), self.pos, [_rep(t, k) for t in self.keys],
                            [_rep(t, k) for t in self.values], None if self.action is None else _rep(self.action, k),
                            [_rep(t, k) for t in self.upper_keys], [_rep(t, k) for t in self.upper_values])


@dataclass
class KVCache:
    """Per-layer keys/values of the frames in the window (block-causal models), oldest first."""

    keys: list[list[torch.Tensor]] = field(default_factory=list)
    """keys[layer][slot]: (B, heads, 336, e); fused models keep here only committed frames (<= 3)."""
    values: list[list[torch.Tensor]] = field(default_factory=list)
    """values[layer][slot]: (B, heads, 336, e)."""
    last_tokens: torch.Tensor | None = None
    """The newest frame's tokens (B, 336), the query block's copy prior."""
    t: int = 0
    """Frames pushed so far: the next frame's time for the rotary embedding."""
    pending: PendingFrame | None = None
    """Fused models: the newest frame, whose action (hence upper-layer keys/values) is not committed yet."""

    @property
    def n_frames(self) -> int:
        """Frames in the window, a pending one included."""
        return (len(self.keys[0]) if self.keys else 0) + (self.pending is not None)

    def tile(self, k: int) -> KVCache:
        """k copies of the batch in one cache, rows [copy 0's B rows, copy 1's, ...]: one warmed history
        dreamed under k action sequences (the probes' LEFT/RIGHT, FIRE/NOOP) without warming it k times."""
        return KVCache([[_rep(t, k) for t in ks] for ks in self.keys], [[_rep(t, k) for t in vs] for vs in self.values],
                       None if self.last_tokens is None else _rep(self.last_tokens, k), self.t,
                       None if self.pending is None else self.pending.tile(k))


@dataclass
class DreamState:
    """Where a batch of B dreams stands, for any world model: its KV cache (block-causal models) or its rolled
    token history (full attention), and the newest frame when it is not pushed yet.

    Made by `TemporalWorldModel.start`, moved on by `advance` (cheap: it only stores the frame) and `prepare`
    (the frame's pass, which play runs before the key is read); `next_logits` prepares first when needed.
    """

    cache: KVCache | None = None
    """Block-causal models: the window's keys/values."""
    history: torch.Tensor | None = None
    """Full attention: the last `max_history` frames' tokens (B, w, 336)."""
    history_actions: torch.Tensor | None = None
    """Full attention: the actions taken at those frames but the last (B, w-1)."""
    pending: torch.Tensor | None = None
    """The newest frame's tokens (B, 336) when `advance` stored it and `prepare` has not pushed it yet."""
    pending_action: torch.Tensor | None = None
    """(B,) the action that led to `pending`, taken at the frame before it."""
    last_tokens: torch.Tensor | None = None
    """The newest frame's tokens (B, 336), pushed or not: the decoders' previous frame."""

    @property
    def batch(self) -> int:
        """B, the number of dreams."""
        assert self.last_tokens is not None
        return self.last_tokens.shape[0]

    def tile(self, k: int) -> DreamState:
        """k copies of the batch, copy-major: one warmed start dreamed under k action sequences."""
        opt = lambda t: None if t is None else _rep(t, k)  # noqa: E731
        return DreamState(None if self.cache is None else self.cache.tile(k), opt(self.history),
                          opt(self.history_actions), opt(self.pending), opt(self.pending_action),
                          opt(self.last_tokens))


def _rep(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.repeat(k, *([1] * (t.dim() - 1)))


def copy_state(state: DreamState) -> DreamState:
    """A copy of `state` whose tensors keep their exact strides (a compiled step guards on them, so a copy laid out
    otherwise would recompile it in play)."""
    return _copied(state)


def _copied(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return torch.empty_strided(x.size(), x.stride(), dtype=x.dtype, device=x.device).copy_(x)
    if isinstance(x, list):
        return [_copied(v) for v in x]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return type(x)(**{f.name: _copied(getattr(x, f.name)) for f in dataclasses.fields(x)})
    return x


def rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate (..., P, h, L, e) q or k by frame time `pos` (P,): scores then depend on time differences.

    Angles are computed in float64 so that a long game's frame counter does not lose precision.
    """
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    ang = pos.to(torch.float64)[:, None] * freqs  # (P, half)
    cos = ang.cos().to(x.dtype)[:, None, None]  # (P, 1, 1, half)
    sin = ang.sin().to(x.dtype)[:, None, None]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., 2 * half :]], -1)


def tile_mask(mask: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """Repeat a per-window mask (P, 1, 1, S) over the batch to match (B*P, h, L, S) flattening."""
    return None if mask is None else mask.repeat(b, 1, 1, 1)


def windows(t: torch.Tensor, w: int) -> torch.Tensor:
    """(B, n, h, L, e) per-frame tensors -> (B, n, h, w*L, e): frame t's window t-w+1..t, zero-padded."""
    pad = torch.zeros_like(t[:, :1]).expand(-1, w - 1, -1, -1, -1)
    tp = torch.cat([pad, t], 1)  # (B, n + w - 1, h, L, e)
    n = t.shape[1]
    win = torch.stack([tp[:, i : i + n] for i in range(w)], 3)  # (B, n, h, w, L, e)
    return rearrange(win, "b n h w l e -> b n h (w l) e")
