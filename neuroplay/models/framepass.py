"""The block-causal frame stream, computing only what is read: `frame_pass`, and `warm_cache` built on it.

In the block-causal models (lite, lite2) frame f's tokens attend, at every layer, to frames f-3..f of the
layer below. So a value read at the top depends on a pyramid: the last layer's output of frame f needs the
layer-below keys/values of f-3..f, hence that layer's inputs there, hence the keys/values of f-6..f one layer
lower, and so on. Everything outside the pyramid is work nobody reads. Two readers use this:

- the evaluation's 1-step pass over runs of samples (`fused.forward_frames(steps=...)`): a sample needs
  its 12 frames of context at the bottom layer but only its own frame at the top;
- starting a dream from a real history (`warm_cache`): play's KV cache keeps each layer's keys/values of the
  last 3-4 frames only, so of a 13-frame context layer 0 runs 13 frames, layer 1 ten, layer 2 seven and the
  top layer four (keys/values only): 34 frame-layers of projections and 21 of attention, against 52 and 52
  when the frames are pushed one by one.

Both equal the plain computation to float precision (tests/test_framepass.py): the pruning drops only work
whose result is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neuroplay.models.cache import KVCache, PendingFrame, rope, tile_mask, windows

TemporalWorldModel = nn.Module
"""The world model these passes run (`neuroplay.models.world_model`), named here without importing it."""


def condition(wm: TemporalWorldModel, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Action conditioning of the frame stream: x (B, m, 336, d), actions (B, m) -> (B, m, 336, d).

    lite's query-block conditioning (spatial bias, then FiLM), applied to the frame's own tokens (lite2).
    """
    a = wm.action_vector(actions)  # (B, m, d)
    bias = wm.action_spatial_bias[actions].flatten(2, 3)  # (B, m, H, W, d) -> (B, m, 336, d)
    return (x + bias) * (1 + wm.cfg.film_scale * torch.tanh(a))[:, :, None]


@dataclass
class FramePass:
    """What `frame_pass` returns."""

    top: torch.Tensor
    """(B, k, 336, d): the last block's output at the k distinct frames asked for, in ascending order."""
    keys: list[dict[int, torch.Tensor]] = field(default_factory=list)
    """keys[layer][frame]: (B, heads, 336, e), rotated, for the frames in `kv_need[layer]`."""
    values: list[dict[int, torch.Tensor]] = field(default_factory=list)
    """values[layer][frame]: as `keys`."""
    x_in: dict[int, torch.Tensor] = field(default_factory=dict)
    """x_in[frame]: (B, 336, d), the stream at the input of the block `x_need` names (before an action enters)."""


def _dilate(frames: np.ndarray, w: int) -> np.ndarray:
    """Frames whose keys/values the frames `frames` attend to: f-(w-1)..f each, those >= 0."""
    if len(frames) == 0:
        return frames
    d = (frames[:, None] - np.arange(w)[None]).reshape(-1)
    return np.unique(d[d >= 0])


def plan(n_layers: int, w: int, out_top: np.ndarray, kv_need: Sequence[np.ndarray],
         x_need: tuple[int, np.ndarray] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer, from the top down: (inputs, outputs), sorted frame indices. A layer's inputs are the frames
    whose keys/values it must produce (asked for, or attended to by its outputs); its outputs are the next
    layer's inputs (and `x_need`'s frames at that layer's input)."""
    ins: list[np.ndarray] = [np.zeros(0, np.int64)] * n_layers
    outs: list[np.ndarray] = [np.zeros(0, np.int64)] * n_layers
    out = np.unique(np.asarray(out_top, np.int64))
    for li in reversed(range(n_layers)):
        outs[li] = out
        ins[li] = np.union1d(np.asarray(kv_need[li], np.int64), _dilate(out, w)).astype(np.int64)
        extra = x_need[1] if x_need is not None and x_need[0] == li else np.zeros(0, np.int64)
        out = np.union1d(ins[li], extra).astype(np.int64)
    return ins, outs


def frame_pass(
    wm: TemporalWorldModel, frames: torch.Tensor, actions: torch.Tensor | None, out_top: np.ndarray,
    kv_need: Sequence[np.ndarray] | None = None, x_need: tuple[int, np.ndarray] | None = None,
) -> FramePass:
    """The frame stream over frames (B, m, 336) at times 0..m-1, computing only what is read.

    out_top: frames whose last-block output is wanted; kv_need[layer]: frames whose keys/values at that layer
    are wanted; x_need (layer, frames): frames whose stream at that layer's input is wanted. `actions` (B, m)
    taken at each frame (fused models, entering at `action_layer`; only the frames that reach that layer are
    read, so a last frame whose action is unknown may hold anything there if nothing above needs it).

    Without autograd on a CPU it runs one batch row at a time: a row's activations (13 frames: 4,368 tokens)
    stay in cache, where a whole batch's spill to memory and the elementwise work (rotary, stacking the
    windows) becomes memory-bound: 1.6x faster for a 32-row warm-up than the whole batch at once, measured.
    """
    n_layers = len(wm.blocks)
    kv_need = kv_need if kv_need is not None else [np.zeros(0, np.int64)] * n_layers
    ins, outs = plan(n_layers, wm.cfg.max_history, out_top, kv_need, x_need)
    b = frames.shape[0]
    if b <= 1 or torch.is_grad_enabled() or frames.device.type != "cpu":
        return _frame_pass(wm, frames, actions, ins, outs, kv_need, x_need)
    rows = [_frame_pass(wm, frames[i : i + 1], None if actions is None else actions[i : i + 1], ins, outs, kv_need,
                        x_need) for i in range(b)]
    cat = lambda ts: torch.cat(ts, 0)  # noqa: E731
    return FramePass(cat([r.top for r in rows]),
                     [{f: cat([r.keys[li][f] for r in rows]) for f in rows[0].keys[li]} for li in range(n_layers)],
                     [{f: cat([r.values[li][f] for r in rows]) for f in rows[0].values[li]} for li in range(n_layers)],
                     {f: cat([r.x_in[f] for r in rows]) for f in rows[0].x_in})


def _frame_pass(
    wm: TemporalWorldModel, frames: torch.Tensor, actions: torch.Tensor | None, ins: list[np.ndarray],
    outs: list[np.ndarray], kv_need: Sequence[np.ndarray], x_need: tuple[int, np.ndarray] | None,
) -> FramePass:
    """`frame_pass` on one batch, its `plan` made."""
    b, m, L = frames.shape
    w, n_layers = wm.cfg.max_history, len(wm.blocks)
    dev = frames.device
    full = np.arange(m)
    cur = np.union1d(ins[0], x_need[1] if x_need is not None and x_need[0] == 0 else []).astype(np.int64)
    x = wm.embed_frames(_take(frames, full, cur)) + wm.temporal_emb.weight[0]  # (B, |cur|, 336, d)
    res = FramePass(x.new_zeros(b, 0, L, x.shape[-1]), [{} for _ in range(n_layers)], [{} for _ in range(n_layers)])
    for li, blk in enumerate(wm.blocks):
        if x_need is not None and x_need[0] == li:
            for f in x_need[1]:
                res.x_in[int(f)] = x[:, int(np.searchsorted(cur, f))]
        x, cur = _take(x, cur, ins[li]), ins[li]  # (B, |ins|, 336, d)
        if len(cur) == 0:
            break
        if wm.fused and li == wm.cfg.action_layer:
            assert actions is not None, "a fused model's frame stream needs the actions taken at its frames"
            x = condition(wm, x, _take(actions, full, cur))
        q, k, v = blk.attn.project(blk.ln1(x))  # (B, |ins|, h, 336, e)
        every = len(cur) == m  # every frame (training's pass): index tensors made on the device, no host copy
        pos = torch.arange(m, device=dev) if every else torch.from_numpy(cur).to(dev)
        q, k = rope(q, pos, wm.cfg.rope_base), rope(k, pos, wm.cfg.rope_base)
        for f in kv_need[li]:
            j = int(np.searchsorted(cur, f))
            res.keys[li][int(f)], res.values[li][int(f)] = k[:, j], v[:, j]
        out = outs[li]
        if len(out) == 0:
            break
        if every and len(out) == m:  # every frame: shifted slices, no gather
            valid = (pos[:, None] - (w - 1) + torch.arange(w, device=dev)) >= 0  # (m, w): slots before frame 0 pad
            kw, vw = windows(k, w), windows(v, w)  # (B, m, h, w*336, e)
        else:
            slots = out[:, None] - (w - 1) + np.arange(w)  # (|out|, w): the frames each output attends to
            valid = torch.from_numpy(slots >= 0).to(dev)
            kw, vw = _gather_windows(k, cur, slots), _gather_windows(v, cur, slots)  # (B, |out|, h, w*336, e)
            q, x = _take(q, cur, out), _take(x, cur, out)  # (B, |out|, h, 336, e), (B, |out|, 336, d)
        mask = valid.repeat_interleave(L, -1)[:, None, None]  # (|out|, 1, 1, w*336)
        y = blk.attn.attend(q.flatten(0, 1), kw.flatten(0, 1), vw.flatten(0, 1), tile_mask(mask, b))  # (B|out|, 336, d)
        x = blk.feed_forward(x + blk.drop(y.view(b, len(out), L, -1)))  # (B, |out|, 336, d)
        cur = out
    if len(outs[-1]):
        res.top = x
    return res


def _gather_windows(k: torch.Tensor, cur: np.ndarray, slots: np.ndarray) -> torch.Tensor:
    """Keys or values k (B, |cur|, h, 336, e) of the sorted frames `cur` -> each output's window
    (B, |out|, h, w*336, e), slots (|out|, w) holding the frames it attends to (< 0: padding, zeros).

    Where the outputs are consecutive frames and `cur` a contiguous range (the usual case), slot i of every
    window is one slice of k: one copy (a stack), not a gather and a transpose."""
    pad = int(max(0, -slots.min()))
    if pad:
        k = torch.cat([k.new_zeros(k.shape[0], pad, *k.shape[2:]), k], 1)  # frames -pad..-1 are zeros
        cur = np.concatenate([np.arange(-pad, 0), cur])
    j = np.searchsorted(cur, slots)  # (|out|, w)
    contiguous = (np.diff(cur) == 1).all() and (len(j) < 2 or (np.diff(j, axis=0) == 1).all())
    if contiguous:
        parts = [k[:, j[0, i] : j[0, i] + len(j)] for i in range(j.shape[1])]  # each (B, |out|, h, 336, e)
        return torch.stack(parts, 3).flatten(3, 4)  # (B, |out|, h, w, 336, e) -> (B, |out|, h, w*336, e)
    return k[:, torch.from_numpy(j).to(k.device)].transpose(2, 3).flatten(3, 4)


def _take(x: torch.Tensor, have: np.ndarray, want: np.ndarray) -> torch.Tensor:
    """Rows `want` of x (B, |have|, ...) indexed by the sorted frames `have` (x itself when they agree)."""
    if len(have) == len(want) and (have == want).all():
        return x
    return x[:, torch.from_numpy(np.searchsorted(have, want)).to(x.device)]


def warm_cache(wm: TemporalWorldModel, frames: torch.Tensor, actions: torch.Tensor | None = None) -> KVCache:
    """The KV cache after pushing history frames (B, T, 336) one by one from an empty cache, in one pruned pass.

    lite: every layer's keys/values of the last `max_history` frames. Fused (lite2): `actions` (B, T-1) taken
    at all frames but the last; the last `max_history - 1` of those are committed, and the newest frame is
    pending (its lower layers run, the action not yet known), as `observe` then `push_frame` leave it.
    """
    b, t, _ = frames.shape
    assert t >= 1, "warm_cache needs at least one frame"
    assert actions is None or tuple(actions.shape) == (b, t - 1), \
        f"warm_cache: actions {tuple(actions.shape)} != {(b, t - 1)}: one per history frame but the last"
    w, n_layers = wm.cfg.max_history, len(wm.blocks)
    cache = KVCache([[] for _ in range(n_layers)], [[] for _ in range(n_layers)], frames[:, -1], t)
    if wm.fused:
        al = wm.cfg.action_layer
        committed = np.arange(max(0, t - w), t - 1)
        kv = [np.append(committed, t - 1) if li < al else committed for li in range(n_layers)]
        acts = torch.cat([actions, actions.new_zeros(b, 1)], 1) if actions is not None else None  # (B, T)
        fp = frame_pass(wm, frames, acts, np.zeros(0, np.int64), kv, (al, np.array([t - 1])))
        for li in range(n_layers):
            cache.keys[li] = [fp.keys[li][int(f)] for f in committed]
            cache.values[li] = [fp.values[li][int(f)] for f in committed]
        pend = PendingFrame(fp.x_in[t - 1][:, None], torch.tensor([t - 1], device=frames.device))
        pend.keys = [fp.keys[li][t - 1] for li in range(al)]
        pend.values = [fp.values[li][t - 1] for li in range(al)]
        cache.pending = pend
        return cache
    last = np.arange(max(0, t - w), t)
    fp = frame_pass(wm, frames, None, np.zeros(0, np.int64), [last] * n_layers)
    for li in range(n_layers):
        cache.keys[li] = [fp.keys[li][int(f)] for f in last]
        cache.values[li] = [fp.values[li][int(f)] for f in last]
    return cache
