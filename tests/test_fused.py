"""lite v2 (`fused_query`): the cached step is the trained function, the action stays out of the lower layers.

Why these tests: a fused model is trained with `forward_sequence` (frames 0..n-2 of a clip, each under the
action taken at it) but played through a cache whose newest frame stays *pending* until its action is
known. If the pending/commit bookkeeping ever stored the wrong action's keys (e.g. the last what-if query
instead of the action played), the game would dream with a model nobody trained, silently. The same
holds for every caller that pushes a history (engine, Dreamer, training rollouts): each must hand the
model the action taken at every history frame. Mirrors `tests/test_engine.py` for the `tiny-fused` preset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.config import WMConfig, get_preset
from neuroplay.engine import DreamEngine
from neuroplay.evaluation.dreamer import Dreamer, Dreamers, rollout
from neuroplay.models.world_model import TemporalWorldModel
from tests.factories import ATOL, random_engine, random_model, random_tokens

PRESET = "tiny-fused"


def fused_model(action_layer: int | None = None, seed: int = 0) -> TemporalWorldModel:
    return random_model(PRESET, seed, action_layer=action_layer)


def fused_engine(**kw: object) -> DreamEngine:
    return random_engine(PRESET, **kw)


# ------------------------------------------------------------------------------ config and shapes
def test_config_is_checked_and_lite2_keeps_lite_shapes() -> None:
    with pytest.raises(ValueError, match="block_causal"):
        WMConfig(fused_query=True)
    with pytest.raises(ValueError, match="action_layer"):
        WMConfig(attention="block_causal", n_layers=2, fused_query=True, action_layer=2)
    lite, lite2 = TemporalWorldModel(get_preset("lite").wm), TemporalWorldModel(get_preset("lite2").wm)
    assert lite2.fused and not lite.fused and get_preset("lite2").wm.action_layer == 2
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(lite) == shapes(lite2)  # lite weights load into lite2 as they are
    lite2.load_state_dict(lite.state_dict())


def test_forward_is_the_sequence_step_and_needs_history_actions() -> None:
    wm = fused_model()
    fr, ac = random_tokens((2, 9, 336), seed=1), random_tokens((2, 8), seed=2, n_vocab=4)
    with torch.inference_mode():
        seq = wm.forward_sequence(fr, ac).logits
        assert seq.shape == (2, 8, 336, 32)
        one = wm(fr[:, :4], ac[:, 3], history_actions=ac[:, :3]).logits
        torch.testing.assert_close(one, seq[:, 3], atol=ATOL, rtol=1e-4)
        assert wm.predict_next(fr[:, :4], ac[:, 3], history_actions=ac[:, :3]).shape == (2, 336)
        with pytest.raises(ValueError, match="history_actions"):
            wm(fr[:, :4], ac[:, 3])
        with pytest.raises(ValueError, match="history_actions"):
            wm.forward_sequence(fr, ac[:, :1], last_only=True)
        # Causal in frames and actions: changing frame 6 or the action at frame 6 leaves steps 0..5 alone.
        fr2, ac2 = fr.clone(), ac.clone()
        fr2[:, 6] = (fr2[:, 6] + 1) % 32
        ac2[:, 6] = (ac2[:, 6] + 1) % 4
        other = wm.forward_sequence(fr2, ac2).logits
        torch.testing.assert_close(other[:, :6], seq[:, :6])
        assert not torch.allclose(other[:, 6], seq[:, 6])


# ------------------------------------------------------------------------------ cache == forward_sequence
@pytest.mark.parametrize("action_layer", [0, 1])
@pytest.mark.parametrize("n_history", [1, 4])
def test_cached_steps_equal_forward_sequence(action_layer: int, n_history: int) -> None:
    """observe() the history, then query+push frame by frame, 25 frames deep (RoPE far from 0): every step's
    logits are forward_sequence's, with what-if queries (every action) before the played one or after it,
    and the push told the played action or left to the last query."""
    wm = fused_model(action_layer)
    b, n = 2, 26
    frames = random_tokens((b, n, wm.n_tokens), seed=3)
    actions = random_tokens((b, n - 1), seed=4, n_vocab=4)
    with torch.inference_mode():
        full = wm.forward_sequence(frames, actions).logits  # (B, n-1, 336, V)
        cache = wm.new_cache()
        for t in range(n_history - 1):
            wm.observe(cache, frames[:, t], actions[:, t])
            assert cache.pending is None and cache.n_frames == min(t + 1, wm.cfg.max_history - 1)
        wm.push_frame(cache, frames[:, n_history - 1])
        for t in range(n_history - 1, n - 1):
            assert cache.n_frames == min(t + 1, wm.cfg.max_history) and cache.t == t + 1
            what_if = [torch.full((b,), a) for a in range(4)]
            if t % 3 == 0:  # played action first, what-ifs after: the push must be told the played one
                got = wm.query(cache, actions[:, t]).logits
                for a in what_if:
                    wm.query(cache, a)
                told = actions[:, t]
            else:  # what-ifs first, the played one last: the push may rely on the last query
                for a in what_if:
                    wm.query(cache, a)
                got = wm.query(cache, actions[:, t]).logits
                told = actions[:, t] if t % 3 == 1 else None
            torch.testing.assert_close(got, full[:, t], atol=ATOL, rtol=1e-4, msg=f"step {t}")
            wm.push_frame(cache, frames[:, t + 1], told)


def test_cache_stays_exact_as_window_slides() -> None:
    """Far into a game the step depends on the last 3L+1 frames, and on the actions taken at the last
    3(L - action_layer)+1 of them (an action enters at action_layer): not on the frame or action before, and
    (a little, at random init) on the oldest inside each span."""
    wm = fused_model()
    span = 3 * wm.cfg.n_layers + 1
    n = span + 9
    frames = random_tokens((1, n, wm.n_tokens), seed=5)
    acts = random_tokens((1, n), seed=6, n_vocab=4)

    def cached(fr: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
        c = wm.new_cache()
        for t in range(n - 1):
            wm.observe(c, fr[:, t], ac[:, t])
        wm.push_frame(c, fr[:, -1])
        return wm.query(c, ac[:, -1]).logits

    with torch.inference_mode():
        got = cached(frames, acts)
        want = wm(frames[:, -span:], acts[:, -1], history_actions=acts[:, -span:-1]).logits
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
        a_span = 3 * (wm.cfg.n_layers - wm.cfg.action_layer) + 1
        for back, matters in ((span + 1, False), (span, True)):
            fr2 = frames.clone()
            fr2[:, -back] = (fr2[:, -back] + 1) % wm.cfg.n_vocab
            diff = (cached(fr2, acts) - got).abs().max().item()
            assert (diff > 0) == matters, (back, diff)
        for back, matters in ((a_span + 1, False), (a_span, True)):
            ac2 = acts.clone()
            ac2[:, -back] = (ac2[:, -back] + 1) % 4
            diff = (cached(frames, ac2) - got).abs().max().item()
            assert (diff > 0) == matters, ("action", back, diff)


def test_lower_layers_ignore_the_action_and_commits_store_the_played_one() -> None:
    wm = fused_model()
    fr, ac = random_tokens((1, 6, 336), seed=7), random_tokens((1, 6), seed=8, n_vocab=4)
    with torch.inference_mode():
        ref = wm.new_cache()
        for t in range(5):
            wm.observe(ref, fr[:, t], ac[:, t])
        c = wm.new_cache()
        for t in range(5):
            wm.push_frame(c, fr[:, t], ac[:, t - 1] if t else None)
            assert c.pending is not None
            lower = [k.clone() for k in c.pending.keys]
            for a in (3, 0, 2):
                wm.query(c, torch.tensor([a]))
            assert all(torch.equal(k, k0) for k, k0 in zip(c.pending.keys, lower))
        wm.push_frame(c, fr[:, 5], ac[:, 4])  # the last query was RIGHT: the played action is recomputed
        for got, want in zip(c.keys + c.values, ref.keys + ref.values):
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="no action"):
            wm.push_frame(c, fr[:, 0])  # pending frame 5 was never queried nor told its action


# ------------------------------------------------------------------------------ engine
def test_engine_logits_equal_model_forward() -> None:
    """The engine's logits are the model's forward on the whole dream, each frame under its action: the
    reset's history actions, then the actions played."""
    eng = fused_engine()
    wm = eng.wm
    hist = random_tokens((4, wm.n_tokens), seed=9)
    played = [1, 3, 0]
    eng.reset(tokens=hist, actions=played)
    history = list(hist)
    with torch.inference_mode():
        for i, a in enumerate([0, 3, 2, 1, 2, 2]):
            want = wm(torch.stack(history)[None], torch.tensor([a]),
                      history_actions=torch.tensor([played])).logits[0]
            for other in (2, 3):  # what-if queries before the step do not change what the step commits
                eng.logits(other)
            torch.testing.assert_close(eng.logits(a), want, atol=ATOL, rtol=1e-4, msg=f"step {i}")
            s = eng.step(a)
            assert torch.equal(torch.from_numpy(s.tokens).long(), want.argmax(-1)), f"step {i}"
            history.append(torch.from_numpy(s.tokens).long())
            played.append(a)


def test_engine_prepare_runs_the_lower_layers_before_the_key() -> None:
    eng = fused_engine()
    eng.reset(tokens=random_tokens((4, 336), seed=10))  # no actions: NOOP at the history frames
    st = eng.state
    assert st is not None and st.pending is None  # the reset pushed the last history frame: nothing waits
    assert st.cache is not None and st.cache.pending is not None  # ... but its action, the first key, is unknown
    assert len(st.cache.pending.keys) == eng.wm.cfg.action_layer == 1
    assert eng.prepare() == 0.0
    logits = [eng.logits(a) for a in range(4)]
    assert not torch.allclose(logits[0], logits[2])
    s = eng.step(2)
    assert st.pending is not None and st.pending_action is not None and int(st.pending_action) == 2
    assert eng.prepare() > 0 and st.pending is None
    # the prepare committed the frame under RIGHT, which the step's query already computed
    with torch.inference_mode():
        ref = eng.wm.new_cache()
        for t, a in zip(random_tokens((4, 336), seed=10), (0, 0, 0, 2)):  # NOOP history, then the step's RIGHT
            eng.wm.observe(ref, t[None], torch.tensor([a]))
        eng.wm.push_frame(ref, torch.from_numpy(s.tokens).long()[None])
        torch.testing.assert_close(eng.logits(1), eng.wm.query(ref, torch.tensor([1])).logits[0])
    # Same start, same actions: the same dream (the decoder restarts from the seed at each reset).
    eng.reset(tokens=random_tokens((4, 336), seed=10))
    assert np.array_equal(eng.step(2).tokens, s.tokens)


# ------------------------------------------------------------------------------ evaluation callers
def test_dreamer_cache_and_plain_forward_agree() -> None:
    """Dreamer/rollout with the cache equal the 4-frame forward on a rolled history (with rolled actions),
    and the recorded history actions reach the model."""
    wm = fused_model()
    hist, acts = random_tokens((3, 4, 336), seed=11), random_tokens((3, 5), seed=12, n_vocab=4)
    h_act = random_tokens((3, 3), seed=13, n_vocab=4)
    with torch.inference_mode():
        a = rollout(Dreamers(wm, [(np.arange(3), hist, h_act)], True), acts)
        for k in range(2):  # later steps differ by design: through the cache a step sees 3L+1 frames
            cached, plain = (Dreamer(wm, hist, use, h_act) for use in (True, False))
            if k:
                for d in (cached, plain):
                    d.logits(acts[:, 0])
                    d.push(a[:, 0])
            torch.testing.assert_close(cached.logits(acts[:, k]), plain.logits(acts[:, k]), atol=ATOL, rtol=1e-4)
        noop = Dreamer(wm, hist).logits(acts[:, 0])  # no history actions: NOOP
        d = Dreamer(wm, hist, history_actions=h_act)
        first = d.logits(acts[:, 0])
        d.logits(torch.full((3,), 3))  # a what-if after the step's own query
        d.push(first.argmax(-1))  # dreamed under acts[:, 0], the first query since the push
        torch.testing.assert_close(d.logits(acts[:, 1]).argmax(-1), a[:, 1], atol=0, rtol=0)
        assert not torch.allclose(noop, Dreamer(wm, hist, history_actions=h_act).logits(acts[:, 0]))


# ------------------------------------------------------------------------------ training and bench
def test_train_wm_smoke_and_bench(tmp_path: Path) -> None:
    """3 steps of `train wm --preset tiny-fused` on a random token file, sequences and K-step rollouts both;
    then `neuroplay bench` on the preset."""
    from neuroplay.cli import main
    from neuroplay.data.episodes import Episodes
    from training.wm import WMTrainConfig, train_wm
    from training.wm_data import TokenSampler

    rng = np.random.default_rng(0)
    lens = np.array([30, 25, 20], np.int64)
    n, m = int(lens.sum()), int(lens.sum() + len(lens))
    eps = Episodes(frames=None, tokens=rng.integers(0, 32, (m, 21, 16), dtype=np.uint8),
                   actions=rng.integers(0, 4, n).astype(np.uint8), rewards=np.zeros(n, np.float32),
                   dones=np.zeros(n, bool), episode_lengths=lens, sources=["random"] * 3, meta={})
    path = tmp_path / "tokens.npz"
    eps.save(path)
    s = TokenSampler(eps, 0.3, 0, 1.0)
    b = s.rollout_batch(16, 2, torch.Generator().manual_seed(0))
    assert b["history_actions"].shape == (16, 3)
    rows = np.array([eps.frame_offsets[0] + 1, eps.frame_offsets[0] + 7])
    first, trans = np.full(2, eps.frame_offsets[0]), rows - eps.frame_offsets[0]
    ha = s._history_actions(rows, first, trans).numpy()  # frame 1: padding, padding, frame 0
    assert list(ha[0]) == [0, 0, eps.actions[0]] and list(ha[1]) == list(eps.actions[4:7])
    for ratio in (0.0, 1.0):
        run = tmp_path / f"run{ratio}"
        train_wm(WMTrainConfig(data=[str(path)], preset=PRESET, run_dir=str(run), steps=3, batch_size=2,
                               seq_frames=6, rollout_ratio=ratio, rollout_steps=2, warmup=1, val_samples=8,
                               eval_every=3, device="cpu", progress_bar=False))
        assert (run / "wm" / "model.safetensors").is_file()
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", PRESET, "--steps", "2", "--warmup", "1", "--items", "wm", "loop", "train",
                 "--train-steps", "1", "--json", str(out)]) == 0
