"""lite v2 (`fused_query`): a frame's own tokens are the queries for the next frame.

The `lite` design runs two passes per dreamed frame: the new frame's 336 tokens (action-independent,
cached) and a 337-token query block (action token + queries) that reads the cached window. Here the
query block is gone: frame t's tokens go through the blocks, attending to frames t-3..t exactly as lite's
frame stream does (same windows, RoPE over frame time, padding masks for the first frames), and the last
block's output at position p of frame t, through `norm_f` and the head, is the logit vector of token p of
frame t+1. The action a_t taken at frame t enters the frame stream at the input of block `action_layer`:

    x <- (x + action_spatial_bias[a_t]) * (1 + film_scale * tanh(action_vector(a_t)))   (per token)

so the blocks below `action_layer` do not depend on the action and can run before the key is read, and
the blocks from `action_layer` up are the only work between the key and the logits. The parameter set is
lite's (`query_emb` and the query row of `temporal_emb` are unused), so lite weights load into a lite2
model as they are (`load_state_dict`; `train wm --init` still insists on the same config).

The price of fusing: a frame's cached keys/values in the layers >= `action_layer` depend on the action
taken at it, so a frame is *pending* until its action is known. The cache protocol:

- `push(cache, tokens, action)`: commit the pending frame (under `action` if given, else under the action
  of its last `query`), then run the lower layers of the new frame and keep it pending;
- `query(cache, action)`: run the upper layers of the pending frame under `action`, return the logits and
  remember that action's upper keys/values as what a later commit stores (callable for several actions);
- `observe(cache, tokens, action)`: push + commit, for history frames whose actions are known.

Everything here equals `forward_frames` on the same frames and actions to float precision (tested).
"""

from __future__ import annotations

import numpy as np
import torch

from neuroplay.models.cache import KVCache, PendingFrame, rope
from neuroplay.models.framepass import TemporalWorldModel, condition, frame_pass


def forward_frames(
    wm: TemporalWorldModel, frames: torch.Tensor, actions: torch.Tensor, last_only: bool = False,
    steps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every frame an input: frames (B, m, 336), actions (B, m) taken at them -> logits (B, m, 336, V),
    step t predicting frame t+1 (only the last step, (B, 1, 336, V), with `last_only`; only the steps in
    `steps` (k,), (B, k, 336, V), when given).

    The training pass (`forward_sequence` feeds it frames 0..n-2 of a clip), the evaluation's 1-step pass
    over runs of consecutive samples, and the reference the cache is tested against. With `last_only` or
    `steps` each block computes only what those frames' logits read (`framepass.frame_pass`).
    """
    b, m, _ = frames.shape
    assert actions.shape == (b, m), f"actions {tuple(actions.shape)} != {(b, m)}: one per input frame"
    keep = np.array([m - 1]) if last_only else np.arange(m) if steps is None else steps.cpu().numpy()
    if not ((keep >= 0) & (keep < m)).all():
        raise ValueError(f"forward_frames: steps must lie in 0..{m - 1}, got {keep.tolist()}")
    u = np.unique(keep)  # frame_pass gives its outputs sorted and once each; map back to the order asked
    top = frame_pass(wm, frames, actions, u).top  # (B, len(u), 336, d)
    if len(u) != len(keep) or (u != keep).any():
        top = top[:, torch.from_numpy(np.searchsorted(u, keep)).to(top.device)]
    return wm.head_logits(wm.norm_f(top))


# ----------------------------------------------------------------------------------- KV cache
def _layer(
    wm: TemporalWorldModel, li: int, x: torch.Tensor, pos: torch.Tensor, cache: KVCache, kv_only: bool = False
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Block `li` for one frame x (B, 1, 336, d) against the committed frames -> (x', k, v), k/v (B, h, 336, e).

    `kv_only`: the frame's keys/values are all that is needed (a commit's last layer): x' is None.
    """
    blk = wm.blocks[li]
    q, k, v = blk.attn.project(blk.ln1(x))  # (B, 1, h, 336, e)
    k, v = rope(k, pos, wm.cfg.rope_base)[:, 0], v[:, 0]  # (B, h, 336, e)
    if kv_only:
        return None, k, v
    q = rope(q, pos, wm.cfg.rope_base)[:, 0]
    y = blk.attn.attend(q, torch.cat(cache.keys[li] + [k], 2), torch.cat(cache.values[li] + [v], 2))  # (B, 336, d)
    return blk.feed_forward(x + blk.drop(y[:, None])), k, v


def _upper(
    wm: TemporalWorldModel, cache: KVCache, action: torch.Tensor, logits: bool = True
) -> tuple[torch.Tensor | None, list[torch.Tensor], list[torch.Tensor]]:
    """The layers >= action_layer of the pending frame under `action` (B,): (logits (B, 336, V) or None, keys,
    values)."""
    p = cache.pending
    assert p is not None
    x: torch.Tensor | None = condition(wm, p.x, action[:, None])  # (B, 1, 336, d)
    ks, vs, last = [], [], len(wm.blocks) - 1
    for li in range(wm.cfg.action_layer, last + 1):
        assert x is not None
        x, k, v = _layer(wm, li, x, p.pos, cache, kv_only=not logits and li == last)
        ks.append(k)
        vs.append(v)
    out = wm.head_logits(wm.norm_f(x[:, 0])) if logits and x is not None else None
    return out, ks, vs


def commit(wm: TemporalWorldModel, cache: KVCache, action: torch.Tensor | None = None) -> None:
    """Store the pending frame's keys/values under `action` (default: its last query's action) and slide the
    window; the upper layers are recomputed only when `action` is not the last queried one."""
    p = cache.pending
    if p is None:
        return
    if action is not None and (p.action is None or not _same(action, p.action)):
        _, up_k, up_v = _upper(wm, cache, action, logits=False)
    elif p.action is not None:
        up_k, up_v = p.upper_keys, p.upper_values
    else:
        raise ValueError("fused model: the pending frame has no action; query it, or pass the action taken "
                         "at it (push_frame(..., action=) / observe())")
    keep = wm.cfg.max_history - 1  # the committed frames a new frame's window reaches back to
    for li, (k, v) in enumerate(zip(p.keys + up_k, p.values + up_v)):
        ks, vs = cache.keys[li] + [k], cache.values[li] + [v]
        cache.keys[li], cache.values[li] = ks[max(0, len(ks) - keep) :], vs[max(0, len(vs) - keep) :]
    cache.pending = None


def push(wm: TemporalWorldModel, cache: KVCache, tokens: torch.Tensor, action: torch.Tensor | None = None) -> None:
    """Commit the pending frame (see `commit`), then run the action-independent lower layers of `tokens`
    (B, 336) and keep it pending."""
    if action is not None and cache.pending is None:
        raise ValueError("push_frame(action=...): there is no pending frame the action was taken at")
    commit(wm, cache, action)
    pos = torch.tensor([cache.t], device=tokens.device)
    x = wm.embed_frames(tokens[:, None]) + wm.temporal_emb.weight[0]  # (B, 1, 336, d)
    p = PendingFrame(x, pos)
    for li in range(wm.cfg.action_layer):
        y, k, v = _layer(wm, li, p.x, pos, cache)
        assert y is not None
        p.x = y
        p.keys.append(k)
        p.values.append(v)
    cache.pending = p
    cache.last_tokens = tokens
    cache.t += 1


def query(wm: TemporalWorldModel, cache: KVCache, action: torch.Tensor) -> torch.Tensor:
    """Logits (B, 336, V) of the frame after the pending one under `action` (B,); remembered for the commit."""
    p = cache.pending
    if p is None:
        raise ValueError("fused model: push a frame before querying (after observe() nothing is pending)")
    logits, p.upper_keys, p.upper_values = _upper(wm, cache, action)
    p.action = action
    assert logits is not None
    return logits


def observe(wm: TemporalWorldModel, cache: KVCache, tokens: torch.Tensor, action: torch.Tensor) -> None:
    """A history frame (B, 336) with the action (B,) taken at it: push and commit at once."""
    push(wm, cache, tokens)
    commit(wm, cache, action)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.shape == b.shape and bool(torch.equal(a.to(b.device), b)))
