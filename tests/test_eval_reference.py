"""The fast evaluation equals a straightforward one, on real Breakout frames and `tiny` models of each
attention: `tiny-full` (spec: full attention, 4 frames), `tiny` (lite: block-causal, KV cache) and `tiny-fused`
(lite2).

The reference below is the definition of the figures written as plainly as possible: one sample at a time, the
model's own `forward` on the sample's context (the frames `context_frames` says can change the prediction;
for a block-causal model more than 4, as play's cache holds them), its own argmax fed back, and every sum kept
in Python. The fast path (`evaluate`) reads runs of consecutive samples in one sequence pass, batches, rolls
out through the KV cache and decodes each distinct frame once; every figure must agree to float precision.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroplay.checkpoint import load_pair
from neuroplay.data.episodes import Episodes
from neuroplay.evaluation.frames import LEFT, MIRROR_ACTION, RIGHT, EvalData, to_uint8
from neuroplay.evaluation.indices import all_samples
from neuroplay.evaluation.metrics import SANE_PSNR, evaluate, paddle_move, paddle_x, psnr_from_mse
from neuroplay.evaluation.objects import ObjectTally
from neuroplay.models.world_model import TemporalWorldModel
from neuroplay.psnr import frame_psnr
from tests.factories import random_model

H = 5


def model(preset: str) -> TemporalWorldModel:
    """Random init, sharpened so that a prediction depends on the oldest frame of its context."""
    return random_model(preset, seed=3, sharpen=8.0, out_scale=4.0)


@torch.inference_mode()
def reference(vq, wm, eps: Episodes, samples: np.ndarray, n_roll: int) -> dict:
    """The figures of `evaluate(..., horizon=H, rollout_samples=n_roll)`, one sample at a time."""
    ctx, s = wm.context_frames, defaultdict(float)
    tally = defaultdict(ObjectTally)
    dec = lambda t: ((vq.decode(t.view(-1, 21, 16)).float().clamp(-1, 1) + 1) / 2)  # (n, 3, 84, 64) in [0, 1]
    enc = lambda f: vq.encode(f).reshape(len(f), -1)  # uint8 (n, 84, 64, 3) or [-1, 1] (n, 3, 84, 64)
    mirror = lambda t: enc(vq.decode(t.view(-1, 21, 16)).float().flip(-1))
    swap = torch.tensor(MIRROR_ACTION)

    def forward(frames: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Logits (336, V) of the frame after frames (T, 336) under acts (T,) (taken at each frame)."""
        return wm(frames[None], acts[-1:], history_actions=acts[None, :-1]).logits[0].float()

    for i, (e, t) in enumerate(samples):
        f0 = int(eps.frame_offsets[e])
        real = torch.from_numpy(eps.frames[f0 : f0 + eps.episode_lengths[e] + 1])  # the episode, uint8
        a0 = int(eps.transition_offsets[e])
        tok = enc(real)
        acts = torch.from_numpy(eps.actions[a0 : a0 + eps.episode_lengths[e]].astype(np.int64))
        pix = real.permute(0, 3, 1, 2).float() / 255
        lo = max(0, t - ctx)
        hist, hist_a = tok[lo : t + 1], acts[lo : t + 1]
        deep = i < n_roll
        steps, pred = min(H if deep else 1, eps.episode_lengths[e] - t), hist[-1]
        for h in range(steps):
            if h:  # feed the argmax back, under the next recorded action
                hist, hist_a = torch.cat([hist, pred[None]])[-(ctx + 1) :], torch.cat([hist_a, acts[t + h][None]])
                hist_a = hist_a[-(ctx + 1) :]
            lg = forward(hist, hist_a)
            pred, target, last = lg.argmax(-1), tok[t + 1 + h], tok[t]
            if h == 0:
                s["ce"] += float(F.cross_entropy(lg, target, reduction="sum"))
                if deep:
                    lp_l, lp_r = (F.log_softmax(forward(hist, torch.cat([hist_a[:-1], torch.tensor([a])])), -1)
                                  for a in (LEFT, RIGHT))
                    s["kl"] += float((lp_l.exp() * (lp_l - lp_r)).sum())
                    s["kl_n"] += 336
                    fr = to_uint8(dec(torch.stack([lp_r.argmax(-1), lp_l.argmax(-1), last])))
                    x = paddle_x(fr)
                    sane = frame_psnr(fr[:2], fr[2]) >= SANE_PSNR
                    dx = (paddle_move(x[2:], x[None, :1], sane[:1]) - paddle_move(x[2:], x[None, 1:2], sane[1:]))[0]
                    if not np.isnan(dx):
                        s["pdx"] += dx
                        s["pdx_n"] += 1
                    pm = forward(mirror(hist), swap[hist_a]).argmax(-1)
                    s["mir"] += float((pm == mirror(pred[None])[0]).sum())
            for p in ("", "d_") if deep else ("",):
                s[f"{p}ok{h}"] += float((pred == target).sum())
                s[f"{p}chg_ok{h}"] += float(((pred == target) & (target != last)).sum())
                s[f"{p}chg{h}"] += float((target != last).sum())
                s[f"{p}se{h}"] += float(((dec(pred) - pix[t + 1 + h]) ** 2).sum())
                s[f"{p}n{h}"] += 1
            if h in (0, H - 1):
                tally[h + 1].add(to_uint8(pix[t + 1 + h][None]), to_uint8(dec(pred)))
    psnr = lambda p, h: psnr_from_mse(s[f"{p}se{h}"] / (s[f"{p}n{h}"] * 3 * 84 * 64))
    return {
        "val_loss": s["ce"] / (s["n0"] * 336), "val_acc": s["ok0"] / (s["n0"] * 336),
        "changed_token_acc": s["chg_ok0"] / s["chg0"], "rollout_psnr_h1": psnr("", 0),
        "action_sensitivity": s["kl"] / s["kl_n"], "action_paddle_dx": s["pdx"] / s["pdx_n"] if s["pdx_n"] else None,
        "mirror_consistency": s["mir"] / (n_roll * 336),
        "curve_acc": [s[f"d_ok{h}"] / (s[f"d_n{h}"] * 336) for h in range(H)],
        "curve_changed": [s[f"d_chg_ok{h}"] / s[f"d_chg{h}"] for h in range(H)],
        "curve_psnr": [psnr("d_", h) for h in range(H)],
        "objects_h1": tally[1].summary(), f"objects_h{H}": tally[H].summary(),
    }


@pytest.mark.parametrize("preset", ["tiny-full", "tiny", "tiny-fused"])
def test_fast_evaluation_equals_the_reference(preset: str, tiny_run: Path, breakout_file: Path) -> None:
    torch.set_num_threads(1)
    vq, _, _ = load_pair(tiny_run)
    wm = model(preset)
    eps = Episodes.load(breakout_file)
    data = EvalData(eps)
    every = all_samples(data.episode_lengths, np.arange(data.n_episodes))
    rng = np.random.default_rng(0)
    # Rolled-out states anywhere, then a run of consecutive states from an episode's start (shorter contexts
    # there) and scattered ones: runs of every shape for the sequence pass.
    picked = np.concatenate([every[rng.choice(len(every), 5, replace=False)], every[:20],
                             every[rng.choice(len(every), 12, replace=False)]])
    fast = evaluate(vq, wm, data, picked, horizon=H, rollout_samples=5, batch_size=4)
    ref = reference(vq, wm, eps, picked, 5)
    close = lambda a, b: a is b is None or a == pytest.approx(b, rel=1e-4, abs=1e-5)
    for k in ("val_loss", "val_acc", "changed_token_acc", "rollout_psnr_h1", "action_sensitivity",
              "action_paddle_dx", "mirror_consistency"):
        assert close(fast[k], ref[k]), (k, fast[k], ref[k])
    curve = fast["per_horizon"]
    assert close(curve["acc"], ref["curve_acc"]) and close(curve["changed_acc"], ref["curve_changed"])
    assert close(curve["psnr"], ref["curve_psnr"])
    for h in (1, H):
        got = fast["objects"][f"h{h}"]
        for k, v in ref[f"objects_h{h}"].items():
            assert close(got[k], v), (h, k, got[k], v)
    assert math.isfinite(fast["val_loss"]) and 0 < fast["val_acc"] < 1  # a random model: not a trivial case


@pytest.mark.parametrize("preset", ["tiny", "tiny-fused"])
def test_runs_give_each_sample_its_whole_context(preset: str) -> None:
    """`h1_logits` over runs equals the model's forward on each sample's context, logit for logit, and that
    context matters: cut to the 4-frame window, the logits move 100x more than the float error allowed."""
    import neuroplay.evaluation.dreamer as dreamer

    torch.set_num_threads(1)
    wm = model(preset)
    lengths = np.array([60, 40])
    tok = torch.randint(32, (int(lengths.sum() + 2), 336), generator=torch.Generator().manual_seed(5))
    acts = np.random.default_rng(5).integers(4, size=int(lengths.sum()))
    f0, a0 = np.array([0, 61]), np.array([0, 60])
    tokens_at = lambda e, f: tok[f0[e] + f]
    actions_at = lambda e, f: acts[a0[e] + f]
    s = np.array([[1, 30], [0, 3], [0, 4], [0, 9], [0, 20], [0, 21], [0, 22], [0, 50], [1, 8], [0, 59]])
    ctx = wm.context_frames
    with torch.inference_mode():
        fast = dreamer.h1_logits(wm, s, tokens_at, actions_at)
        for i, (e, t) in enumerate(s):
            f = np.arange(max(0, t - ctx), t + 1)
            a = torch.from_numpy(actions_at(e, f)).long()[None]
            ref = wm(tokens_at(e, f)[None], a[:, -1], history_actions=a[:, :-1]).logits[0]
            torch.testing.assert_close(fast[i], ref, atol=1e-5, rtol=1e-5)
        short = dreamer.h1_logits(wm, s, tokens_at, actions_at, context=3)
    assert (short - fast).abs().max() > 1e-3
