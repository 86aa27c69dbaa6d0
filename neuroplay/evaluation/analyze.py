"""`neuroplay analyze vqvae | actions`: look inside a checkpoint (the reference design's `analyze_vqvae`,
`check_action_conditioning`).

- vqvae: how the codebook is used (histogram, perplexity, dead codes: a share under 1% of the mean share, the
  quantizer's own reset rule) and how well frames come back (aggregate PSNR, the worst frames side by side
  with their reconstruction). A collapsed codebook or a VQ that erases the ball caps every world-model figure.
- actions: from the same history, the next frame under each of the 4 actions, and which tokens differ from
  the NOOP prediction. A model that ignores actions shows four identical frames and empty difference maps.
- dream: what becomes of the ball: on states whose real next frame shows it, taken in the seeded order with
  no regard to the model, the real frame, its VQ reconstruction and the world model's 1-step argmax dream,
  one column each, and how many of the dreams show the ball (within 3 px of the real one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from neuroplay.config import ACTION_NAMES
from neuroplay.envs.breakout import detect
from neuroplay.evaluation.frames import EvalData, FrameSource, to_uint8
from neuroplay.evaluation.metrics import SANE_PSNR, paddle_move, paddle_x, psnr_from_mse
from neuroplay.evaluation.objects import VQ_GATES, ObjectTally, gates
from neuroplay.psnr import frame_psnr


def _grid(rows: list[list[np.ndarray]], scale: int = 2, gap: int = 2) -> np.ndarray:
    """Tiles (84, 64, 3) uint8 in rows -> one image, grey gaps, upscaled."""
    out = [np.concatenate([np.pad(t, ((gap, gap), (gap, gap), (0, 0)), constant_values=90) for t in r], 1)
           for r in rows]
    img = np.concatenate(out, 0)
    return img.repeat(scale, 0).repeat(scale, 1)


@torch.inference_mode()
def analyze_vqvae(vq: Any, data: EvalData, samples: np.ndarray, out_dir: str | Path, worst: int = 8,
                  batch_size: int = 64, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Codebook usage and reconstruction over the frames t of `samples`; writes PNGs to `out_dir`."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    src = FrameSource(data, vq, torch.device(device), batch_size)
    k = vq.cfg.n_embeddings
    rows = np.sort(data.rows(samples))
    counts, mse, lost = np.zeros(k, np.int64), np.zeros(len(rows)), np.zeros(len(rows), bool)
    tally = ObjectTally()
    for i in range(0, len(rows), batch_size):
        r = rows[i : i + batch_size]
        tok, real = src.fetch(r, pixels=data.kind == "frames")
        counts += np.bincount(tok.reshape(-1).cpu().numpy(), minlength=k)[:k]
        if real is not None:
            rec = src.decode01(tok)
            mse[i : i + len(r)] = ((rec - real) ** 2).flatten(1).mean(1).cpu().numpy()
            lost[i : i + len(r)] = tally.add(to_uint8(real), to_uint8(rec))
    p = counts / max(1, counts.sum())
    nz = p[p > 0]
    dead = p < vq.cfg.dead_code_threshold / k
    out: dict[str, Any] = {
        "frames": int(len(rows)), "codebook_size": k, "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
        "dead_codes": int(dead.sum()), "unused_codes": int((counts == 0).sum()),
        "recon_psnr": psnr_from_mse(float(mse.mean())) if data.kind == "frames" else None,
        "usage": p.round(6).tolist(),
    }
    if data.kind == "frames":
        out["objects"] = tally.summary()
        out["objects"]["psnr"] = out["recon_psnr"]
        out["gates"] = gates(out["objects"])
    fig = Figure(figsize=(7, 3), dpi=110)
    ax = fig.subplots()
    ax.bar(np.arange(k), p, color=["tab:red" if x else "tab:blue" for x in dead])
    ax.axhline(vq.cfg.dead_code_threshold / k, color="k", lw=0.8, ls="--", label="dead-code threshold")
    if dead.any():
        ax.scatter(np.nonzero(dead)[0], np.full(int(dead.sum()), vq.cfg.dead_code_threshold / k), marker="x",
                   color="tab:red", zorder=3, label="dead code")
    ax.set_xlabel("code")
    ax.set_ylabel("share of tokens")
    ax.set_yscale("log")
    ax.set_title(f"codebook usage: perplexity {out['perplexity']:.1f} of {k}, {out['dead_codes']} dead")
    ax.legend()
    fig.tight_layout()
    fig.savefig(d / "codebook_usage.png")
    out["files"] = [str(d / "codebook_usage.png")]
    if data.kind == "frames" and worst > 0:
        bad = rows[np.argsort(-mse)[:worst]]
        real = data.images(bad)
        rec = to_uint8(src.decode01(src.fetch(bad, pixels=False)[0]))
        diff = np.clip(np.abs(real.astype(np.int16) - rec.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        iio.imwrite(d / "worst_reconstructions.png", _grid([[a, b, c] for a, b, c in zip(real, rec, diff)]))
        out["worst_rows"] = bad.tolist()
        if lost.any():  # the frames whose ball the tokenizer lost, the failure PSNR hides
            gone = rows[np.nonzero(lost)[0][:worst]]
            real = data.images(gone)
            rec = to_uint8(src.decode01(src.fetch(gone, pixels=False)[0]))
            iio.imwrite(d / "lost_balls.png", _grid([[a, b] for a, b in zip(real, rec)], scale=3))
            out["files"].append(str(d / "lost_balls.png"))
        out["worst_psnr"] = [psnr_from_mse(float(x)) for x in np.sort(mse)[::-1][:worst]]
        out["files"].append(str(d / "worst_reconstructions.png"))
        # What a player sees: real frames with the ball in flight (top) and their reconstructions (bottom).
        scan = rows[:: max(1, len(rows) // 200)]
        flying = [r for r, f in zip(scan, data.images(scan)) if detect(f).ball_visible]
        if flying:
            pick = np.array(flying[:: max(1, len(flying) // worst)][:worst])
            real = data.images(pick)
            rec = to_uint8(src.decode01(src.fetch(pick, pixels=False)[0]))
            iio.imwrite(d / "ball_examples.png", _grid([list(real), list(rec)], scale=3))
            out["files"].append(str(d / "ball_examples.png"))
    return out


@torch.inference_mode()
def analyze_actions(vq: Any, wm: Any, data: EvalData, samples: np.ndarray, out_dir: str | Path,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Next frame under each action from the same histories (`samples`), token differences vs NOOP; PNG + dict."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    src = FrameSource(data, vq, torch.device(device))
    n = len(samples)
    dream = src.dreamer(wm, samples)
    logp = [F.log_softmax(dream.logits(torch.full((n,), a, device=src.device)), -1) for a in range(4)]
    preds = [lp.argmax(-1) for lp in logp]  # 4 x (n, 336)
    last = dream.last
    frames = to_uint8(src.decode01(torch.cat([last] + preds))).reshape(5, n, 84, 64, 3)
    x = paddle_x(frames.reshape(-1, 84, 64, 3)).reshape(5, n)
    sane = frame_psnr(frames[1:], frames[:1]) >= SANE_PSNR  # (4, n): predictions that still look like the game
    stats: dict[str, Any] = {}
    for a, name in enumerate(ACTION_NAMES):
        kl = (logp[a].exp() * (logp[a] - logp[0])).sum(-1).mean()
        stats[name] = {"tokens_changed_vs_last": float((preds[a] != last).sum(1).float().mean()),
                       "tokens_differ_from_noop": float((preds[a] != preds[0]).sum(1).float().mean()),
                       "kl_vs_noop": float(kl), "paddle_dx": _nanmean(paddle_move(x[0], x[a + 1, :, None], sane[a]))}
    columns = ["last frame", *ACTION_NAMES, "FIRE vs NOOP", "RIGHT vs NOOP", "LEFT vs NOOP"]
    fig = Figure(figsize=(1.25 * len(columns), 1.75 * n + 0.3), dpi=110)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i in range(n):
        row = [frames[j, i] for j in range(5)]
        for a in range(1, 4):  # changed tokens in yellow over the dimmed prediction
            mask = (preds[a][i] != preds[0][i]).view(21, 16).cpu().numpy().repeat(4, 0).repeat(4, 1)[..., None]
            row.append((frames[a + 1, i] * 0.35 + mask * np.array([255, 220, 0]) * 0.65).astype(np.uint8))
        for j, img in enumerate(row):
            axes[i, j].imshow(img, interpolation="nearest")
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(columns[j], fontsize=8)
    fig.tight_layout()
    fig.savefig(d / "actions.png")
    return {"states": n, "columns": columns, "per_action": stats, "files": [str(d / "actions.png")]}


@torch.inference_mode()
def analyze_dream(vq: Any, wm: Any, data: EvalData, samples: np.ndarray, out_dir: str | Path, n: int = 8,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """Real t+1 / VQ reconstruction / 1-step dream for the first `n` of `samples` whose real t+1 shows a ball."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    src = FrameSource(data, vq, torch.device(device))
    s = samples[(samples[:, 1] >= 3) & (samples[:, 1] < data.episode_lengths[samples[:, 0]])]
    picked: list[np.ndarray] = []
    for i in range(0, len(s), 256):
        c = s[i : i + 256]
        ball = np.array([detect(f).ball_visible for f in src.real_uint8(data.rows(c) + 1)])
        picked.extend(c[ball])
        if len(picked) >= n:
            break
    st = np.array(picked[:n], np.int64).reshape(-1, 2)
    act = torch.from_numpy(data.actions_at(st)).long().to(src.device)
    dream = to_uint8(src.decode01(src.dreamer(wm, st).logits(act).argmax(-1)))
    real = src.real_uint8(data.rows(st) + 1)
    recon = to_uint8(src.decode01(src.fetch(data.rows(st) + 1, pixels=False)[0]))
    hits = []
    for r, p in zip(real, dream):
        a, b = detect(r), detect(p)
        hits.append(bool(b.ball_visible and np.hypot(a.ball_x - b.ball_x, a.ball_y - b.ball_y) <= 3))  # type: ignore[operator]
    iio.imwrite(d / "dream_ball.png", _grid([list(real), list(recon), list(dream)], scale=3))
    return {"states": len(st), "dream_shows_ball": int(sum(hits)), "rows": ["real t+1", "VQ reconstruction",
            "dream h1 (argmax)"], "files": [str(d / "dream_ball.png")]}


def dream_table(r: dict[str, Any]) -> str:
    return (f"{r['states']} states whose real next frame shows the ball: the 1-step dream shows it (within 3 px) "
            f"in {r['dream_shows_ball']}")


def _nanmean(x: np.ndarray) -> float | None:
    return float(np.nanmean(x)) if (~np.isnan(x)).any() else None


def vqvae_table(r: dict[str, Any]) -> str:
    psnr = "-" if r["recon_psnr"] is None else f"{r['recon_psnr']:.2f} dB"
    head = (f"frames {r['frames']}, codebook {r['codebook_size']}: perplexity {r['perplexity']:.2f}, "
            f"dead codes {r['dead_codes']}, unused {r['unused_codes']}, reconstruction PSNR {psnr}")
    if "objects" not in r:
        return head
    o, g = r["objects"], r["gates"]
    lines = [head, f"{'object figure':<22}  {'value':>8}  gate"]
    for key, (op, bar) in VQ_GATES.items():
        v = o.get(key)
        lines.append(f"{key:<22}  {'-' if v is None else f'{v:8.4f}':>8}  {op} {bar:g} "
                     f"{'ok' if g[key] else 'FAILS'}")
    for key in ("ball_precision", "paddle_x_err", "score_agree", "lives_agree"):
        v = o.get(key)
        lines.append(f"{key:<22}  {'-' if v is None else f'{v:8.4f}':>8}")
    return "\n".join(lines)


def actions_table(r: dict[str, Any]) -> str:
    lines = [f"{'action':<6}  {'changed vs last':>15}  {'differ from NOOP':>16}  {'KL vs NOOP':>10}  {'paddle dx':>9}"]
    for name, s in r["per_action"].items():
        dx = "-" if s["paddle_dx"] is None else f"{s['paddle_dx']:+.2f}"
        lines.append(f"{name:<6}  {s['tokens_changed_vs_last']:>15.1f}  {s['tokens_differ_from_noop']:>16.1f}  "
                     f"{s['kl_vs_noop']:>10.4f}  {dx:>9}")
    return "\n".join(lines)
