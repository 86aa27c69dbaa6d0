"""The real-time path: the KV-cached step is the same function as the full forward, and the engine is sane.

Why these tests: the `lite` model is trained with `forward_sequence` (whole clips under the block-causal
mask) but played with `new_cache/push_frame/query`; if the two ever disagree, the game dreams with a model
nobody trained. The cache must also stay exact as the window slides (rotary time, not absolute), and the
engine must be deterministic under argmax (and seeded otherwise) and keep the action out of the frame pass (that is what
lets the game run the frame pass before the key is read). No timings here: speed lives in `neuroplay bench`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.config import DecodeConfig, DecodeMode
from neuroplay.engine import DreamEngine
from tests.factories import ATOL, random_engine, random_pair, random_tokens


# ------------------------------------------------------------------------------ cache == full forward
@pytest.mark.parametrize("preset", ["tiny", "lite", "tiny-local"])
def test_cached_steps_equal_forward_sequence(preset: str) -> None:
    """Pushing frames one by one and querying gives forward_sequence's logits for every step."""
    _, wm = random_pair(preset)
    b, n = 2, 7
    frames = random_tokens((b, n, wm.n_tokens), seed=1)
    actions = random_tokens((b, n - 1), seed=2, n_vocab=4)
    with torch.inference_mode():
        full = wm.forward_sequence(frames, actions).logits  # (B, n-1, 336, V)
        cache = wm.new_cache()
        for t in range(n - 1):
            wm.push_frame(cache, frames[:, t])
            assert cache.n_frames == min(t + 1, wm.cfg.max_history)
            step = wm.query(cache, actions[:, t]).logits
            torch.testing.assert_close(step, full[:, t], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("preset", ["tiny", "lite"])
def test_cache_stays_exact_as_window_slides(preset: str) -> None:
    """Far into a game (frame time 20), the cached step equals `forward_sequence` over just the frames it
    can depend on, started at time 0: only time differences matter (rotary time), so keys computed when
    a frame entered the window stay valid.

    Each layer looks 3 frames back, so through L layers the step depends on the last 3L+1 frames, not
    only the last 4 (as in a sliding-window LM): `forward` on a 4-frame history is the play-time function
    only for the first steps of a dream.
    """
    _, wm = random_pair(preset)
    span = 3 * wm.cfg.n_layers + 1
    n = span + 7
    frames = random_tokens((1, n, wm.n_tokens), seed=3)
    with torch.inference_mode():
        cache = wm.new_cache()
        for t in range(n):
            wm.push_frame(cache, frames[:, t])
        assert cache.n_frames == wm.cfg.max_history and cache.t == n
        for a in range(4):
            action = torch.tensor([a])
            want = wm.forward_sequence(frames[:, -span:], action[:, None], last_only=True).logits[:, 0]
            torch.testing.assert_close(wm.query(cache, action).logits, want, atol=ATOL, rtol=1e-4)
        # The frame just outside that span does not matter at all (same ops on the same inputs: bitwise
        # equal); the oldest frame inside it does, if only a little at random init.
        for back, matters in ((span + 1, False), (span, True)):
            other = frames.clone()
            other[:, -back] = (other[:, -back] + 1) % wm.cfg.n_vocab
            c2 = wm.new_cache()
            for t in range(n):
                wm.push_frame(c2, other[:, t])
            diff = (wm.query(c2, action).logits - wm.query(cache, action).logits).abs().max().item()
            assert (diff > 0) == matters, (back, diff)


@pytest.mark.parametrize("preset", ["tiny", "lite", "tiny-full"])
def test_engine_logits_equal_model_forward(preset: str) -> None:
    """The engine's logits are the model's own forward on the same frames, before and after steps: the
    last 4 frames for full attention, the dream so far (started at time 0) for the cached models."""
    eng = random_engine(preset)
    wm, w = eng.wm, eng.window
    hist = random_tokens((w, wm.n_tokens), seed=4)
    eng.reset(tokens=hist)
    history = list(hist)
    with torch.inference_mode():
        for i, a in enumerate([0, 3, 2, 1, 2]):
            action = torch.tensor([a])
            if wm.block_causal:  # the dream's whole history (see test_cache_stays_exact_as_window_slides)
                want = wm.forward_sequence(torch.stack(history)[None], action[:, None], last_only=True).logits[0, 0]
            else:
                want = wm(torch.stack(history[-w:])[None], action).logits[0]
            torch.testing.assert_close(eng.logits(a), want, atol=ATOL, rtol=1e-4, msg=f"step {i}")
            s = eng.step(a)
            assert torch.equal(torch.from_numpy(s.tokens).long(), want.argmax(-1)), f"step {i}"
            history.append(torch.from_numpy(s.tokens).long())


def test_short_start_is_padded_like_the_model() -> None:
    """A dream started from one frame still steps (full attention repeats the first frame to fill 4)."""
    for preset in ("tiny", "tiny-fused", "tiny-full"):
        eng = random_engine(preset)
        frame = eng.reset(tokens=random_tokens((1, 336), seed=5))
        assert frame.shape == (84, 64, 3)
        assert eng.step(1).frame.shape == (84, 64, 3)


# ------------------------------------------------------------------------------ engine behaviour
def test_reset_and_step_shapes() -> None:
    eng = random_engine("tiny")
    rng = np.random.default_rng(0)
    first = eng.reset(frames=rng.integers(0, 256, (4, 84, 64, 3), dtype=np.uint8))
    assert first.shape == (84, 64, 3) and first.dtype == np.uint8
    prev = eng.last_tokens
    s = eng.step(2)
    assert s.frame.shape == (84, 64, 3) and s.frame.dtype == np.uint8
    assert s.tokens.shape == (336,) and s.tokens.dtype == np.uint8 and int(s.tokens.max()) < 32
    assert s.changed_tokens == int((torch.from_numpy(s.tokens).long() != prev).sum())
    assert set(s.timings_ms) == {"prepare", "model", "decode", "total"}
    assert all(v >= 0 for v in s.timings_ms.values())
    with pytest.raises(ValueError):
        eng.reset()


@pytest.mark.parametrize("preset", ["tiny", "tiny-fused", "tiny-full"])
def test_argmax_is_deterministic(preset: str) -> None:
    hist = random_tokens((4, 336), seed=6)
    runs = []
    for _ in range(2):
        eng = random_engine(preset)
        eng.reset(tokens=hist)
        runs.append([eng.step(a).tokens for a in (0, 1, 2, 3, 2, 2)])
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)
    # A reset replays the dream from the same start in the same engine too.
    eng.reset(tokens=hist)
    np.testing.assert_array_equal(eng.step(0).tokens, runs[1][0])


@pytest.mark.parametrize("mode", ["sample", "coupled"])
def test_sampling_is_reproducible_with_the_seed(mode: DecodeMode) -> None:
    """Two engines with one seed dream alike, and a reset replays the dream in the same engine (the decoder
    restarts from the seed); another seed dreams otherwise."""
    hist = random_tokens((4, 336), seed=7)
    outs = []
    eng = random_engine("tiny", decode=DecodeConfig(mode, confident=0.5), seed=3)
    for e in (random_engine("tiny", decode=DecodeConfig(mode, confident=0.5), seed=3), eng, eng):
        e.reset(tokens=hist)
        outs.append(np.stack([e.step(a).tokens for a in (0, 2, 3)]))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[1], outs[2])
    eng.reset(tokens=hist, seed=4)
    assert not np.array_equal(np.stack([eng.step(a).tokens for a in (0, 2, 3)]), outs[0])


def test_frame_pass_is_independent_of_the_action() -> None:
    """prepare() pushes the newest frame before any action is known; queries for any action leave the
    cache untouched, so the game can run the frame pass while it waits for the key."""
    eng = random_engine("tiny")
    eng.reset(tokens=random_tokens((4, 336), seed=8))
    eng.step(1)  # the step's frame waits, unpushed, for the frame pass
    assert eng.state is not None and eng.state.pending is not None
    assert eng.prepare() > 0 and eng.state.pending is None
    assert eng.prepare() == 0.0  # nothing left to do until the next step
    cache = eng.state.cache
    assert cache is not None
    keys = [[k.clone() for k in layer] for layer in cache.keys]
    t = cache.t
    logits = [eng.logits(a) for a in range(4)]
    assert cache.t == t
    for layer, saved in zip(cache.keys, keys):
        for k, k0 in zip(layer, saved):
            assert torch.equal(k, k0)
    torch.testing.assert_close(eng.logits(0), logits[0])  # querying twice gives the same answer
    assert not torch.allclose(logits[0], logits[2])  # ... and the action does reach the query pass


def test_cache_holds_only_frame_passes() -> None:
    """After steps under different actions, the engine's cache is exactly the frame passes of the frames
    it saw: the action of a step never leaks into the keys/values later steps attend to."""
    eng = random_engine("tiny")
    hist = random_tokens((4, 336), seed=9)
    eng.reset(tokens=hist)
    seen = list(hist)
    for a in (3, 0, 2, 1, 1):
        seen.append(torch.from_numpy(eng.step(a).tokens).long())
    eng.prepare()
    ref = eng.wm.new_cache()
    with torch.inference_mode():
        for t in seen:
            eng.wm.push_frame(ref, t[None])
    cache = eng.state.cache if eng.state is not None else None
    assert cache is not None and cache.t == ref.t == len(seen)
    for got, want in zip(cache.keys + cache.values, ref.keys + ref.values):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ bf16 vs fp32
def test_bf16_engine_agrees_with_fp32(tiny_run: Path, breakout_file: Path) -> None:
    """Trained tiny pair: bf16 weights pick the same token as fp32 for most positions, frames look alike."""
    from neuroplay.data.episodes import Episodes

    frames = Episodes.load(breakout_file).frames[10:14]
    e32 = DreamEngine.from_checkpoint(tiny_run, "cpu", dtype="fp32")
    e16 = DreamEngine.from_checkpoint(tiny_run, "cpu", dtype="bf16")
    assert e16.dtype == torch.bfloat16 and e32.dtype == torch.float32
    f32, f16 = e32.reset(frames=frames), e16.reset(frames=frames)
    assert np.abs(f32.astype(int) - f16.astype(int)).mean() < 8  # of 255
    seen = list(e32.encode(frames).cpu().numpy())
    agree = []
    for a in (1, 2, 2, 3, 0):
        l32, l16 = e32.logits(a), e16.logits(a)
        agree.append((l32.argmax(-1) == l16.argmax(-1)).float().mean().item())
        # Keep both dreams on the fp32 tokens so each step compares like with like.
        seen.append(e32.step(a).tokens)
        e16.reset(tokens=np.stack(seen[-4:]))
    assert min(agree) > 0.9, agree


@pytest.mark.parametrize("preset", ["tiny", "tiny-fused"])
def test_compiled_engine_matches_eager_and_never_recompiles_in_play(preset: str) -> None:
    """`--compile`: after reset (which warms up), stepping through a filling-then-sliding window runs
    without a single recompile (a recompile is 10-25 s of dropped frames on a CPU), and the compiled
    step gives the eager step's logits (fused: the query also stores its keys/values in the cache)."""
    import torch._dynamo as dynamo

    dynamo.reset()
    eager, compiled = random_engine(preset), random_engine(preset, compile=True)
    start = random_tokens((4, 336), seed=11)
    eager.reset(tokens=start)
    compiled.reset(tokens=start)
    actions = [0, 2, 3, 1, 2, 2, 3]
    with dynamo.config.patch(error_on_recompile=True):
        for a in actions:
            torch.testing.assert_close(compiled.logits(a), eager.logits(a), atol=ATOL, rtol=1e-4)
            assert np.array_equal(compiled.step(a).tokens, eager.step(a).tokens)
    dynamo.reset()
