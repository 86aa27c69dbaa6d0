"""The pruned frame stream (`neuroplay/models/framepass.py`) computes exactly what the plain one does.

Why: the evaluation and every dream started from a real history now skip the work the result never reads (a
13-frame context warms the cache in ~5 frame passes, a sparse sample's logits in ~2). A wrong pyramid, one layer
short at the bottom, would still give plausible logits, only from a shorter context than play's cache holds, so
each test compares with the unpruned computation on models whose predictions depend on their oldest frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroplay.config import get_preset
from neuroplay.models import framepass
from neuroplay.models.world_model import KVCache, TemporalWorldModel
from tests.factories import random_model

ATOL = 1e-4
"""Float noise of a different summation order; the sharpened keys are large, so 1e-4 (the oldest frame moves
the logits by 4e-2)."""


def deep_model(preset: str, seed: int = 0) -> TemporalWorldModel:
    """`preset` at 4 layers (lite's depth: the pyramid spans 12 frames), with the attention sharpened so that a
    prediction depends on its oldest frame (through three hops of attention)."""
    fused = get_preset(preset).wm.fused_query
    return random_model(preset, seed, n_layers=4, action_layer=2 if fused else None, sharpen=32.0, out_scale=4.0)


def pushed(wm: TemporalWorldModel, frames: torch.Tensor, actions: torch.Tensor) -> KVCache:
    """The reference: the history pushed one frame at a time, as play does."""
    cache = wm.new_cache()
    for i in range(frames.shape[1]):
        if wm.fused and i < frames.shape[1] - 1:
            wm.observe(cache, frames[:, i], actions[:, i])
        else:
            wm.push_frame(cache, frames[:, i])
    return cache


def assert_same_cache(a: KVCache, b: KVCache) -> None:
    assert a.t == b.t and torch.equal(a.last_tokens, b.last_tokens)
    for ka, kb, va, vb in zip(a.keys, b.keys, a.values, b.values):
        assert len(ka) == len(kb)
        for x, y in zip(ka + va, kb + vb):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=0)
    assert (a.pending is None) == (b.pending is None)
    if a.pending is not None and b.pending is not None:
        torch.testing.assert_close(a.pending.x, b.pending.x, atol=ATOL, rtol=0)
        assert torch.equal(a.pending.pos, b.pending.pos) and a.pending.action is None
        for x, y in zip(a.pending.keys + a.pending.values, b.pending.keys + b.pending.values):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=0)


@pytest.mark.parametrize("preset", ["tiny", "tiny-fused"])
@pytest.mark.parametrize("t", [1, 2, 4, 6, 13, 17])
def test_warm_cache_equals_pushing_frame_by_frame(preset: str, t: int) -> None:
    wm = deep_model(preset)
    g = torch.Generator().manual_seed(t)
    frames = torch.randint(0, wm.cfg.n_vocab, (3, t, 336), generator=g)
    acts = torch.randint(0, 4, (3, max(t - 1, 0)), generator=g)
    with torch.inference_mode():
        fast, ref = wm.warm_cache(frames, acts), pushed(wm, frames, acts)
        assert_same_cache(fast, ref)
        for step in range(3):  # the warmed cache plays on exactly as the pushed one
            a = torch.tensor([1, 2, 3]) if step % 2 else torch.tensor([0, 3, 2])
            la, lb = wm.query(fast, a).logits, wm.query(ref, a).logits
            torch.testing.assert_close(la, lb, atol=ATOL, rtol=0)
            nxt = la.argmax(-1)
            wm.push_frame(fast, nxt, a if wm.fused else None)
            wm.push_frame(ref, nxt, a if wm.fused else None)


def test_the_oldest_context_frame_matters_so_the_test_can_fail() -> None:
    """Changing frame 0 of a 13-frame context changes the warmed model's logits: the pyramid reaches it."""
    wm = deep_model("tiny-fused")
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, wm.cfg.n_vocab, (2, 13, 336), generator=g)
    acts = torch.randint(0, 4, (2, 12), generator=g)
    other = frames.clone()
    other[:, 0] = torch.randint(0, wm.cfg.n_vocab, (2, 336), generator=g)
    a = torch.tensor([2, 3])
    with torch.inference_mode():
        la = wm.query(wm.warm_cache(frames, acts), a).logits
        lb = wm.query(wm.warm_cache(other, acts), a).logits
        short = wm.query(wm.warm_cache(frames[:, 1:], acts[:, 1:]), a).logits
    assert (la - lb).abs().max() > 1e-3
    assert (la - short).abs().max() > 1e-3  # and a 12-frame context is not the same prediction


@pytest.mark.parametrize("steps", [[0], [12], [3, 40], [5, 6, 7, 30, 63], list(range(64))])
def test_sparse_steps_equal_the_full_sequence_pass(steps: list[int]) -> None:
    wm = deep_model("tiny-fused", seed=1)
    g = torch.Generator().manual_seed(len(steps))
    frames = torch.randint(0, wm.cfg.n_vocab, (2, 65, 336), generator=g)
    acts = torch.randint(0, 4, (2, 64), generator=g)
    with torch.inference_mode():
        full = wm.forward_sequence(frames, acts).logits  # (2, 64, 336, V): every step, no pruning
        some = wm.forward_sequence(frames, acts, steps=torch.tensor(steps)).logits
    torch.testing.assert_close(some, full[:, steps], atol=ATOL, rtol=0)


def test_plan_is_the_pyramid() -> None:
    """A 13-frame warm of a 4-layer lite: layer 0 reads 13 frames, then 10, 7 and 4; nothing runs above the
    top layer's keys/values. A lone sample's logits: 13/10/7/4 inputs and 10/7/4/1 outputs."""
    last = np.arange(9, 13)
    ins, outs = framepass.plan(4, 4, np.zeros(0, np.int64), [last] * 4)
    assert [len(i) for i in ins] == [13, 10, 7, 4] and [len(o) for o in outs] == [10, 7, 4, 0]
    ins, outs = framepass.plan(4, 4, np.array([12]), [np.zeros(0, np.int64)] * 4)
    assert [len(i) for i in ins] == [13, 10, 7, 4] and [len(o) for o in outs] == [10, 7, 4, 1]
    assert ins[0][0] == 0 and outs[-1][0] == 12


@pytest.mark.parametrize("preset", ["tiny", "tiny-fused"])
def test_tiled_dreams_equal_separate_ones_and_stay_independent(preset: str) -> None:
    """`Dreamers.tile`: one warm-up dreamed under two action sequences equals two dreams warmed apart, in the
    documented row order (copy 0's states, then copy 1's), and rolling the copy leaves the original untouched."""
    from neuroplay.evaluation.dreamer import Dreamers, rollout

    wm = deep_model(preset, seed=2)
    g = torch.Generator().manual_seed(5)
    hist = torch.randint(0, wm.cfg.n_vocab, (3, 9, 336), generator=g)
    hist_a = torch.randint(0, 4, (3, 8), generator=g)
    acts = torch.randint(0, 4, (6, 4), generator=g)  # rows 0-2: branch 0 of states 0-2; rows 3-5: branch 1
    make = lambda: Dreamers(wm, [(np.arange(3), hist, hist_a)])  # noqa: E731
    with torch.inference_mode():
        d = make()
        tiled = rollout(d.tile(2), acts)
        apart = torch.cat([rollout(make(), acts[:3]), rollout(make(), acts[3:])])
        # equal tokens but for float-noise ties (a swapped row order would differ in most of them)
        assert (tiled == apart).float().mean() > 0.999
        torch.testing.assert_close(d.logits(acts[:3, 0]), make().logits(acts[:3, 0]), atol=ATOL, rtol=0)


def test_whole_batch_and_row_at_a_time_agree() -> None:
    """With autograd on, `frame_pass` runs the whole batch (the GPU path, and the gather of non-contiguous
    windows with B > 1); without, one row at a time. Same logits and caches; steps in any order, repeated."""
    wm = deep_model("tiny-fused", seed=3)
    g = torch.Generator().manual_seed(9)
    frames = torch.randint(0, wm.cfg.n_vocab, (3, 40, 336), generator=g)
    acts = torch.randint(0, 4, (3, 39), generator=g)
    steps = torch.tensor([30, 2, 17, 30])
    with torch.enable_grad():
        whole = wm.forward_sequence(frames, acts, steps=steps).logits.detach()
        cache_whole = wm.warm_cache(frames[:, :13], acts[:, :12])
    with torch.inference_mode():
        rows = wm.forward_sequence(frames, acts, steps=steps).logits
        full = wm.forward_sequence(frames, acts).logits
        assert_same_cache(wm.warm_cache(frames[:, :13], acts[:, :12]), cache_whole)
    torch.testing.assert_close(whole, rows, atol=ATOL, rtol=0)
    torch.testing.assert_close(rows, full[:, steps], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="steps must lie"):
        wm.forward_sequence(frames, acts, steps=torch.tensor([-1]))
