"""The world-model metrics of the reference design (docs/design.md), each beside its copy-last-frame baseline.

Breakout's background is static (under 1% of pixels change per step), so token accuracy alone flatters any
model: copying the last frame scores ~97%. Every figure here therefore comes with what copying the last real
frame scores, and `changed_token_acc` scores only the tokens that move. Definitions:

- a sample is (episode, t) with t >= 3 and t+h inside the episode for horizon h (`indices.py`);
- the model predicts from the sample's context as play's KV cache holds it: the real frames since
  max(episode start, t - `wm.context_frames`) (12 frames before t for lite's 4 block-causal layers: each layer
  reaches 3 frames further back; 3 for the spec's full attention);
- open-loop rollouts: the model feeds on its own argmax, the recorded actions drive it;
- PSNR is aggregate: 10*log10(1 / MSE over all samples and pixels), pixels in [0, 1], capped at
  `PSNR_CAP` dB for a perfect match; `copy_last_psnr_hK` compares real frame t+K with real frame t.
  "Real" frames are the file's pixels, or the VQ decode of a token file's tokens;
- `mirror_consistency`: with M(x) = encode(flip_lr(decode(x))), the token agreement between the prediction
  from M(history) under the mirrored action (LEFT<->RIGHT) and M(prediction from history). A model that
  ignores actions also scores 1.0, so read it beside `action_sensitivity`;
- `action_sensitivity`: mean per-token KL(p_LEFT || p_RIGHT) of the 1-step predictions (nats), and
  `action_paddle_dx`: mean paddle x under RIGHT minus under LEFT in the decoded predictions (pixels), over
  states where both predictions still look like the game and their paddles are plausible moves (`paddle_move`).

All of it runs batched under `torch.inference_mode`. The 1-step figures of block-causal models (lite) come
from one sequence pass over runs of consecutive samples (`dreamer.h1_logits`, about one frame pass a sample
on the gold tier); rollouts go through the KV cache, one frame pass a step. tests/test_eval_reference.py
checks every figure against a plain one-sample-at-a-time reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.breakout import Objects, detect
from neuroplay.evaluation.dreamer import Dreamers, h1_logits, plan_runs, rollout
from neuroplay.evaluation.frames import LEFT, MIRROR_ACTION, RIGHT, EvalData, FrameSource, to_uint8
from neuroplay.evaluation.objects import ObjectTally
from neuroplay.models.decoding import ARGMAX, DecodeConfig, TokenDecoder
from neuroplay.psnr import frame_psnr, psnr_from_mse

SHALLOW_SPAN = 8
"""Samples scored at h1 only go in spans of this many batches (long runs for `h1_logits`)."""
ROLLOUT_PASSES = 35
"""Frame passes of a rolled-out sample (its context, 10 steps, LEFT/RIGHT, the mirrored context): its weight in
the progress bar, where an h1-only sample weighs the frames its run adds (`span_work`)."""


def plan_spans(samples: np.ndarray, n_roll: int, batch_size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """`evaluate`'s order and batches: the first n_roll samples (rolled out) in batches of `batch_size`, then the
    rest scored at h1 only, in (episode, t) order and in spans of `SHALLOW_SPAN` batches, so that `h1_logits`
    reads runs of consecutive samples in one sequence pass. Every figure is a sum, so the order changes nothing."""
    rest = samples[n_roll:][np.lexsort((samples[n_roll:, 1], samples[n_roll:, 0]))]
    wide = batch_size * SHALLOW_SPAN
    spans = [(i, min(i + batch_size, n_roll)) for i in range(0, n_roll, batch_size)]
    spans += [(i, min(i + wide, len(samples))) for i in range(n_roll, len(samples), wide)]
    return np.concatenate([samples[:n_roll], rest]), spans


def span_work(wm: Any, s: np.ndarray, deep: bool) -> int:
    """A span's share of the progress bar, in frame passes (see `ROLLOUT_PASSES`)."""
    return len(s) * ROLLOUT_PASSES if deep else sum(r[2] for r in plan_runs(s, wm.context_frames))


def eval_work(wm: Any, samples: np.ndarray, n_roll: int, batch_size: int) -> int:
    """`evaluate`'s progress total: the sum of `span_work` over its spans."""
    ordered, spans = plan_spans(np.asarray(samples, np.int64).reshape(-1, 2), n_roll, batch_size)
    return sum(span_work(wm, ordered[i0:i1], i0 < n_roll) for i0, i1 in spans)
REPORT_HORIZONS = (1, 5, 10)
MAX_PADDLE_STEP = 10.0
"""Largest paddle move between frames (px) taken as real: 99.9% of real steps are under 9.4 px."""
SANE_PSNR = 20.0
"""A dreamed frame is "still the game" above this PSNR (dB) against the real frame it started from: real frames up
to 30 steps apart score over 25.8 dB (99.9% of collected data), decoded noise about 8 dB."""


def paddle_x(frames: np.ndarray) -> np.ndarray:
    """Detected paddle centre per uint8 frame (NaN where none)."""
    return paddle_xs([detect(f) for f in frames])


def paddle_xs(objs: list[Objects]) -> np.ndarray:
    """`paddle_x` of readings already made."""
    return np.array([np.nan if o.paddle_x is None else o.paddle_x for o in objs], np.float64)


def paddle_move(x0: np.ndarray, xs: np.ndarray, sane: np.ndarray | None = None) -> np.ndarray:
    """Displacement of paddle tracks x0 (n,) -> xs (n, k) at the end, NaN unless the paddle is seen in every frame,
    never jumps more than `MAX_PADDLE_STEP` and the dream is `sane` (n,) bool. The detector takes the mean of the
    red columns in the paddle rows, so decoded noise has a "paddle" too, and a random model "responds" to
    actions; `sane` should say the dreamed frames still look like the game (`SANE_PSNR`)."""
    track = np.concatenate([x0[:, None], xs], 1)
    ok = ~np.isnan(track).any(1) & (True if sane is None else sane)
    ok[ok] = (np.abs(np.diff(track[ok], axis=1)) <= MAX_PADDLE_STEP).all(1)
    return np.where(ok, track[:, -1] - track[:, 0], np.nan)


class _Acc:
    """Named running sums; `deep=True` also adds to "d_<key>", the sums over the rolled-out subset."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}
        self.objects: dict[str, ObjectTally] = {}
        """Object agreement with the real frame: "vq" (reconstruction of t+1), "h1", "h5", "h10" (the dream)."""

    def tally(self, key: str, real: torch.Tensor, test: torch.Tensor) -> None:
        """Add (n, 3, 84, 64) [0, 1] frames to the object tally `key`."""
        if len(real):
            self.objects.setdefault(key, ObjectTally()).add(to_uint8(real), to_uint8(test))

    def add(self, key: str, value: float | torch.Tensor, deep: bool = False) -> None:
        for k in (key, "d_" + key) if deep else (key,):
            self.s[k] = self.s.get(k, 0.0) + float(value)

    def ratio(self, num: str, den: str) -> float | None:
        d = self.s.get(den, 0.0)
        return self.s.get(num, 0.0) / d if d > 0 else None


@torch.inference_mode()
def evaluate(
    vq: Any, wm: Any, data: EvalData | Episodes, samples: np.ndarray, *, horizon: int = 10, batch_size: int = 32,
    rollout_samples: int = 0, device: torch.device | str = "cpu", use_cache: bool | None = None,
    progress: Callable[[int], None] | None = None, decode: DecodeConfig = ARGMAX, seed: int = 0,
) -> dict[str, Any]:
    """All sample metrics of one tier; `samples` (n, 2) (episode, t). Returns a JSON-able dict.

    Token figures are the argmax's. With a sampling `decode` (play's decoder) the rolled-out subset is also
    dreamed with it, seeded by `seed` and the batch, and its PSNR and object figures come as `play_*`.

    `vq=None` (a token file, e.g. from training) gives the token metrics only. `rollout_samples` > 0 gives
    rollouts beyond h1, mirror consistency and action sensitivity on the first that many samples only (the
    tiers are in random order, so they are a random subset); the 1-step figures always use every sample, and
    the `per_horizon` curves use the subset at every horizon so that their points compare.
    """
    data = data if isinstance(data, EvalData) else EvalData(data)
    device = torch.device(device)
    src = FrameSource.of(data, vq, device, max(batch_size, 64))
    samples = np.asarray(samples, np.int64).reshape(-1, 2)
    if len(samples) == 0:
        raise DatasetError("no evaluation sample (each needs t >= 3 and t+1 inside its episode)")
    if (samples[:, 0] >= data.n_episodes).any() or (samples[:, 1] < 3).any() or \
            (samples[:, 1] >= data.episode_lengths[samples[:, 0]]).any():
        raise DatasetError("an evaluation sample lies outside its episode (indices made for other data?)")
    n_roll = len(samples) if rollout_samples <= 0 else min(rollout_samples, len(samples))
    acc, pix = _Acc(), vq is not None
    samples, spans = plan_spans(samples, n_roll, batch_size)
    for i0, i1 in spans:
        s, deep = samples[i0:i1], i0 < n_roll
        room = data.episode_lengths[s[:, 0]] - s[:, 1]
        hs = np.minimum(horizon if deep else 1, room)  # (B,) steps per sample
        h_max = int(hs.max())
        r = data.rows(s)
        steps = np.minimum(np.arange(h_max)[None], hs[:, None] - 1)  # (B, H), clamped inside the episode
        rows = np.concatenate([r[:, None], r[:, None] + 1 + steps], 1)  # (B, 1 + H): frame t, then the targets
        tok, px = src.fetch(rows.reshape(-1), pixels=pix)
        tok = tok.view(len(s), 1 + h_max, -1)
        tgt, last = tok[:, 1:], tok[:, 0]
        acts = torch.from_numpy(data.actions_at(s, steps)).long()  # (B, H)
        acts = acts.to(device)
        valid = torch.from_numpy(np.arange(h_max)[None] < hs[:, None]).to(device)  # (B, H)
        if deep:
            d = src.dreamer(wm, s, use_cache)
            lg = d.logits(acts[:, 0])
        else:
            lg = _h1(wm, src, s, rows, tok.view(-1, tok.shape[-1]), batch_size, use_cache)
        acc.add("ce", F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt[:, 0].reshape(-1), reduction="sum"))
        preds = [lg.argmax(-1)]
        if deep:
            _sensitivity(d, src, acc, pix)
            if pix:
                _mirror(wm, src, s, acts[:, 0], preds[0], acc, use_cache)
        for k in range(1, h_max):
            d.push(preds[-1], acts[:, k - 1])
            preds.append(d.logits(acts[:, k]).argmax(-1))
        pred = torch.stack(preds, 1)  # (B, H, 336)
        for h in range(h_max):
            m = valid[:, h]
            ok, copy, moved = (pred[m, h] == tgt[m, h]), (last[m] == tgt[m, h]), (tgt[m, h] != last[m])
            acc.add(f"ok{h}", ok.sum(), deep)
            acc.add(f"copy{h}", copy.sum(), deep)
            acc.add(f"tok{h}", ok.numel(), deep)
            acc.add(f"chg_ok{h}", (ok & moved).sum(), deep)
            acc.add(f"chg{h}", moved.sum(), deep)
        if pix and px is not None:
            px = px.view(len(s), 1 + h_max, *px.shape[1:])
            real, real_t = px[:, 1:][valid], px[:, :1].expand(-1, h_max, -1, -1, -1)[valid]
            hidx = torch.arange(h_max, device=device)[None].expand(len(s), -1)[valid]
            dream = src.decode01(pred[valid])
            se_m = ((dream - real) ** 2).flatten(1).sum(1)
            se_c = ((real_t - real) ** 2).flatten(1).sum(1)
            for h in range(h_max):
                acc.add(f"se{h}", se_m[hidx == h].sum(), deep)
                acc.add(f"sec{h}", se_c[hidx == h].sum(), deep)
                acc.add(f"px{h}", (hidx == h).sum() * real[0].numel(), deep)
                if h + 1 in REPORT_HORIZONS:
                    acc.tally(f"h{h + 1}", real[hidx == h], dream[hidx == h])
            if deep and decode.mode != "argmax":  # play's decoder on the same starts and actions
                dec = TokenDecoder(decode, seed * 1_000_003 + i0, device)
                dream = src.decode01(rollout(src.dreamer(wm, s, use_cache), acts, dec)[valid])
                se_p = ((dream - real) ** 2).flatten(1).sum(1)
                for h in range(h_max):
                    acc.add(f"play_se{h}", se_p[hidx == h].sum())
                    if h + 1 in REPORT_HORIZONS:
                        acc.tally(f"play_h{h + 1}", real[hidx == h], dream[hidx == h])
            if data.kind == "frames":
                recon = src.decode01(tgt[:, 0])
                acc.add("se_vq", ((recon - px[:, 1]) ** 2).sum())
                acc.add("px_vq", px[:, 1].numel())
                acc.tally("vq", px[:, 1], recon)
        if progress is not None:
            progress(span_work(wm, s, deep))
    return _summarize(acc, horizon, len(samples), n_roll, pix, data.kind, decode)


def _h1(wm: Any, src: FrameSource, s: np.ndarray, rows: np.ndarray, tok: torch.Tensor, batch_size: int,
        use_cache: bool | None) -> torch.Tensor:
    """1-step logits (B, 336, V) of samples `s`, each from its full context: `h1_logits` (runs of nearby
    samples in one sequence pass), or with `use_cache` False `Dreamers` on the rolled window, batch by batch
    (the tests' reference).
    `tok` (n, 336) are the tokens of the already fetched `rows` (n,); the rest of the runs' frames are fetched."""
    if use_cache is False:
        acts = torch.from_numpy(src.data.actions_at(s)).long().to(tok.device)
        return torch.cat([src.dreamer(wm, s[i : i + batch_size], use_cache).logits(acts[i : i + batch_size])
                          for i in range(0, len(s), batch_size)])
    data, ctx = src.data, wm.context_frames
    need = np.unique(np.concatenate([data.frame_offsets[e] + np.arange(max(0, t - ctx), t + 2) for e, t in s]))
    have, first = np.unique(rows.reshape(-1), return_index=True)
    miss = np.setdiff1d(need, have)
    u = np.concatenate([have, miss])
    all_tok = torch.cat([tok[torch.from_numpy(first).to(tok.device)], src.fetch(miss, pixels=False)[0]])
    order = np.argsort(u)
    u, all_tok = u[order], all_tok[torch.from_numpy(order).to(tok.device)]

    def tokens_at(e: int, frames: np.ndarray) -> torch.Tensor:
        j = np.searchsorted(u, data.frame_offsets[e] + frames)
        return all_tok[torch.from_numpy(j).to(tok.device)]

    return h1_logits(wm, s, tokens_at, lambda e, f: data.actions[data.transition_offsets[e] + f])


def _sensitivity(d: Dreamers, src: FrameSource, acc: _Acc, pix: bool) -> None:
    b, last = d.batch, d.last
    full = lambda a: torch.full((b,), a, dtype=torch.long, device=last.device)
    lp_l, lp_r = (F.log_softmax(d.logits(full(a)), -1) for a in (LEFT, RIGHT))
    acc.add("kl", (lp_l.exp() * (lp_l - lp_r)).sum(-1).sum())
    acc.add("kl_n", lp_l.shape[0] * lp_l.shape[1])
    if pix:
        frames = to_uint8(src.decode01(torch.cat([lp_r.argmax(-1), lp_l.argmax(-1), last])))
        x, ref = paddle_x(frames), frames[2 * b :]
        x0 = x[2 * b :]
        sane_r, sane_l = (frame_psnr(frames[i * b : (i + 1) * b], ref) >= SANE_PSNR for i in (0, 1))
        dx = paddle_move(x0, x[:b, None], sane_r) - paddle_move(x0, x[b : 2 * b, None], sane_l)
        ok = ~np.isnan(dx)
        acc.add("pdx", dx[ok].sum())
        acc.add("pdx_n", ok.sum())


def _mirror(wm: Any, src: FrameSource, s: np.ndarray, action: torch.Tensor, pred: torch.Tensor, acc: _Acc,
            use_cache: bool | None) -> None:
    swap = torch.tensor(MIRROR_ACTION, device=action.device)
    pred_m = src.dreamer(wm, s, use_cache, mirror=True).logits(swap[action]).argmax(-1)
    acc.add("mir_ok", (pred_m == src.mirror(pred)).sum())
    acc.add("mir_n", pred.numel())


def _summarize(acc: _Acc, horizon: int, n: int, n_roll: int, pix: bool, kind: str,
               decode: DecodeConfig) -> dict[str, Any]:
    def figures(p: str) -> dict[str, list[Any]]:
        """Per-horizon figures from sums with prefix p ("": every sample, "d_": the rolled-out subset)."""
        hs = list(range(1, horizon + 1))
        mse = lambda k, h: acc.ratio(f"{p}{k}{h - 1}", f"{p}px{h - 1}")
        return {
            "h": hs, "n_tokens": [int(acc.s.get(f"{p}tok{h - 1}", 0)) for h in hs],
            "acc": [acc.ratio(f"{p}ok{h - 1}", f"{p}tok{h - 1}") for h in hs],
            "copy_last_acc": [acc.ratio(f"{p}copy{h - 1}", f"{p}tok{h - 1}") for h in hs],
            "changed_acc": [acc.ratio(f"{p}chg_ok{h - 1}", f"{p}chg{h - 1}") for h in hs],
            "psnr": [None if (m := mse("se", h)) is None else psnr_from_mse(m) for h in hs],
            "copy_last_psnr": [None if (m := mse("sec", h)) is None else psnr_from_mse(m) for h in hs],
        }

    every, curve = figures(""), figures("d_")  # the curve: one sample set at every horizon
    at = lambda key, h: every[key][h - 1] if h <= horizon else None
    out: dict[str, Any] = {
        "n_samples": n, "n_samples_rollout": n_roll, "horizon": horizon,
        "val_loss": acc.ratio("ce", "tok0"), "val_acc": at("acc", 1), "copy_last_acc": at("copy_last_acc", 1),
        "changed_token_acc": at("changed_acc", 1),
    }
    for h in REPORT_HORIZONS[1:]:
        out[f"rollout_acc_h{h}"] = at("acc", h)
        out[f"copy_last_acc_h{h}"] = at("copy_last_acc", h)
        out[f"rollout_changed_acc_h{h}"] = at("changed_acc", h)
    for h in REPORT_HORIZONS:
        out[f"rollout_psnr_h{h}"] = at("psnr", h)
        out[f"copy_last_psnr_h{h}"] = at("copy_last_psnr", h)
    vq_mse = acc.ratio("se_vq", "px_vq")
    out["vq_recon_psnr"] = None if vq_mse is None else psnr_from_mse(vq_mse)
    out["mirror_consistency"] = acc.ratio("mir_ok", "mir_n")
    out["action_sensitivity"] = acc.ratio("kl", "kl_n")
    out["action_paddle_dx"] = acc.ratio("pdx", "pdx_n")
    out["psnr_reference"] = None if not pix else ("pixels" if kind == "frames" else "vq_decoded_tokens")
    out["objects"] = {k: v.summary() for k, v in acc.objects.items()}
    vq_obj = out["objects"].get("vq", {})
    for k in ("ball_recall", "false_ball_rate", "ball_pos_err", "paddle_recall", "bricks_agree", "digits_agree"):
        out[f"vq_{k}"] = vq_obj.get(k)
    for h in REPORT_HORIZONS:
        for pre in ("", "play_"):
            o = out["objects"].get(f"{pre}h{h}", {})
            for k in ("ball_recall", "ball_precision", "false_ball_rate", "paddle_recall", "bricks_agree",
                      "digits_agree"):
                out[f"{pre}dream_{k}_h{h}"] = o.get(k)
        m = acc.ratio(f"play_se{h - 1}", f"d_px{h - 1}") if f"play_se{h - 1}" in acc.s else None  # argmax: none
        out[f"play_psnr_h{h}"] = None if m is None else psnr_from_mse(m)
    out["decode"] = decode.label()
    out["per_horizon"] = curve
    return out
