"""What `neuroplay eval` writes: the figures table, the JSON file, and a Markdown page with plots and frames.

The page is for a person deciding whether a checkpoint is any good, so every model figure sits beside the
copy-last baseline, and the frames show what the numbers hide: real frames above the dream of them.
Plots use matplotlib's `Figure` directly (the Agg canvas, no pyplot state, no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
from matplotlib.figure import Figure

from neuroplay.checkpoint import atomic_write_bytes
from neuroplay.evaluation.dreamer import rollout
from neuroplay.evaluation.frames import EvalData, FrameSource, to_uint8

ROWS: list[tuple[str, str, str | None, str]] = [
    ("token accuracy h1 (val_acc)", "val_acc", "copy_last_acc", "{:.4f}"),
    ("changed-token accuracy h1", "changed_token_acc", None, "{:.4f}"),
    ("rollout token accuracy h5", "rollout_acc_h5", "copy_last_acc_h5", "{:.4f}"),
    ("rollout token accuracy h10", "rollout_acc_h10", "copy_last_acc_h10", "{:.4f}"),
    ("rollout changed-token accuracy h5", "rollout_changed_acc_h5", None, "{:.4f}"),
    ("rollout changed-token accuracy h10", "rollout_changed_acc_h10", None, "{:.4f}"),
    ("rollout PSNR h1 (dB)", "rollout_psnr_h1", "copy_last_psnr_h1", "{:.2f}"),
    ("rollout PSNR h5 (dB)", "rollout_psnr_h5", "copy_last_psnr_h5", "{:.2f}"),
    ("rollout PSNR h10 (dB)", "rollout_psnr_h10", "copy_last_psnr_h10", "{:.2f}"),
    ("VQ reconstruction PSNR (dB)", "vq_recon_psnr", None, "{:.2f}"),
    ("VQ ball recall / false-ball rate", "vq_ball_recall", "vq_false_ball_rate", "{:.3f}"),
    ("VQ ball position error (px, median)", "vq_ball_pos_err", None, "{:.2f}"),
    ("VQ paddle recall", "vq_paddle_recall", None, "{:.3f}"),
    ("VQ bricks per row agree", "vq_bricks_agree", None, "{:.3f}"),
    ("VQ score and lives agree", "vq_digits_agree", None, "{:.3f}"),
    ("dream ball recall h1 / precision", "dream_ball_recall_h1", "dream_ball_precision_h1", "{:.3f}"),
    ("dream ball recall h5 / precision", "dream_ball_recall_h5", "dream_ball_precision_h5", "{:.3f}"),
    ("dream ball recall h10 / precision", "dream_ball_recall_h10", "dream_ball_precision_h10", "{:.3f}"),
    ("dream paddle recall h1 / h10", "dream_paddle_recall_h1", "dream_paddle_recall_h10", "{:.3f}"),
    ("dream bricks agree h1 / h10", "dream_bricks_agree_h1", "dream_bricks_agree_h10", "{:.3f}"),
    ("dream score and lives agree h1 / h10", "dream_digits_agree_h1", "dream_digits_agree_h10", "{:.3f}"),
    ("play decoder: PSNR h1 / h10 (dB)", "play_psnr_h1", "play_psnr_h10", "{:.2f}"),
    ("play decoder: ball recall h1 / false-ball rate", "play_dream_ball_recall_h1", "play_dream_false_ball_rate_h1",
     "{:.3f}"),
    ("play decoder: ball recall h5 / false-ball rate", "play_dream_ball_recall_h5", "play_dream_false_ball_rate_h5",
     "{:.3f}"),
    ("play decoder: ball recall h10 / false-ball rate", "play_dream_ball_recall_h10",
     "play_dream_false_ball_rate_h10", "{:.3f}"),
    ("play decoder: paddle recall h1 / h10", "play_dream_paddle_recall_h1", "play_dream_paddle_recall_h10", "{:.3f}"),
    ("val loss (CE, h1)", "val_loss", None, "{:.4f}"),
    ("mirror consistency", "mirror_consistency", None, "{:.4f}"),
    ("action sensitivity, KL(LEFT‖RIGHT) per token", "action_sensitivity", None, "{:.4f}"),
    ("paddle x under RIGHT - LEFT, h1 (px)", "action_paddle_dx", None, "{:+.2f}"),
    ("action response rate", "action_response_rate", None, "{:.3f}"),
    ("FIRE launches a ball", "fire_launch_rate", "noop_launch_rate", "{:.3f}"),
    ("FIRE, real game on the same states: launches / NOOP does", "fire_real_launch_rate", "noop_real_launch_rate",
     "{:.3f}"),
    ("FIRE: ball on the first step (of launches) / real", "fire_delay_at_once", "fire_real_delay_at_once", "{:.3f}"),
    ("FIRE: ball within 5 steps (of launches) / real", "fire_delay_within_5", "fire_real_delay_within_5", "{:.3f}"),
    ("ball alive 30 dreamed steps", "ball_alive_rate", None, "{:.3f}"),
    ("reset screen: FIRE shows a ball / NOOP does", "reset_launch_rate", "reset_noop_rate", "{:.3f}"),
    ("flight: ball visible, tracker playing / real game, tracker", "flight_visible", "flight_tracker_real_visible",
     "{:.3f}"),
    ("flight: real frames under the recorded actions", "flight_real_visible", None, "{:.3f}"),
    ("flight: ball position error h1-5 (px, median)", "flight_pos_err", None, "{:.2f}"),
    ("bounce turns with the real one / real", "bounce_rate", "bounce_real_rate", "{:.3f}"),
    ("brick hit: brick goes / real", "hit_rate", "hit_real_rate", "{:.3f}"),
    ("brick hit: score rises / real", "hit_score_rate", "hit_score_real_rate", "{:.3f}"),
    ("lost ball: gone, lives down / real", "lost_rate", "lost_real_rate", "{:.3f}"),
    ("lost ball, halves: gone / lives down", "lost_gone_rate", "lost_lives_down_rate", "{:.3f}"),
    ("lost ball: lives digit readable at the end", "lost_digit_readable", None, "{:.3f}"),
    ("play score (mean of the probe rates above)", "play_score", None, "{:.3f}"),
    ("endless dream: paddle visible / real game", "endless_paddle_visible", "endless_real_paddle_visible", "{:.3f}"),
    ("endless dream: ball in play / real game", "endless_ball_in_play", "endless_real_ball_in_play", "{:.3f}"),
    ("endless dream: bricks broken / real game", "endless_bricks_broken", "endless_real_bricks_broken", "{:d}"),
    ("endless dream: frames with 2 balls / 2 paddles", "endless_two_balls", "endless_two_paddles", "{:d}"),
    ("endless dream: bricks back (times / slots)", "endless_brick_rises", "endless_brick_rise_slots", "{:d}"),
    ("endless dream: lives lost / real game", "endless_lives_lost", "endless_real_lives_lost", "{:d}"),
    ("endless dream: score readable / real game", "endless_score_readable", "endless_real_score_readable",
     "{:.3f}"),
    ("endless dream: lives digit readable / real game", "endless_lives_readable", "endless_real_lives_readable",
     "{:.3f}"),
    ("endless dream: score goes back / real game", "endless_score_drops", "endless_real_score_drops", "{:d}"),
    ("argmax: action response rate", "action_response_rate_argmax", None, "{:.3f}"),
    ("argmax: FIRE launches a ball", "fire_launch_rate_argmax", "noop_launch_rate_argmax", "{:.3f}"),
    ("argmax: ball alive 30 dreamed steps", "ball_alive_rate_argmax", None, "{:.3f}"),
]
"""(label, model key, baseline key, format); the FIRE row's baseline is the NOOP control; the object rows
(`neuroplay.evaluation.objects`, against the real frame) put a second figure in that column, named in the label.
Token and "dream" rows are the argmax's; "play decoder" rows and the probes use play's decoder, with the
probes' argmax figures beside them when the two differ."""


def beats_copy_last(m: dict[str, Any]) -> dict[str, bool | None]:
    """The bar: better than copy-last on PSNR and token accuracy at each horizon (None: not measured)."""
    pairs = [("val_acc", "copy_last_acc"), ("rollout_acc_h5", "copy_last_acc_h5"),
             ("rollout_acc_h10", "copy_last_acc_h10")] + [(f"rollout_psnr_h{h}", f"copy_last_psnr_h{h}")
                                                          for h in (1, 5, 10)]
    return {a: (None if m.get(a) is None or m.get(b) is None else bool(m[a] > m[b])) for a, b in pairs}


def _fmt(v: Any, f: str) -> str:
    return "-" if v is None else f.format(v)


def table(m: dict[str, Any], markdown: bool = False) -> str:
    """The figures as aligned text or a Markdown table: metric, model, copy-last (or control)."""
    rows = [(label, _fmt(m.get(k), f), _fmt(m.get(b), f) if b else "-") for label, k, b, f in ROWS
            if m.get(k) is not None]
    if markdown:
        return "\n".join(["| metric | model | copy-last / control |", "|---|---:|---:|"]
                         + [f"| {a} | {b} | {c} |" for a, b, c in rows])
    w = max(len(r[0]) for r in rows) if rows else 10
    return "\n".join([f"{'metric':<{w}}  {'model':>9}  {'copy-last':>9}"]
                     + [f"{a:<{w}}  {b:>9}  {c:>9}" for a, b, c in rows])


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(result, indent=2, allow_nan=False) + "\n").encode())
    return path


@torch.inference_mode()
def rollout_examples(
    vq: Any, wm: Any, data: EvalData, samples: np.ndarray, n: int = 3, horizon: int = 10,
    device: torch.device | str = "cpu", use_cache: bool | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(real frames t..t+H, dreamed frames t+1..t+H) as uint8 (H+1|H, 84, 64, 3), for the first n samples
    with room for `horizon` steps."""
    src = FrameSource(data, vq, torch.device(device))
    s = samples[samples[:, 1] + horizon <= data.episode_lengths[samples[:, 0]]][:n]
    out = []
    for e_t in s:
        r = data.rows(e_t[None])[0]
        acts = data.actions_at(e_t[None], np.arange(horizon))  # (1, H): t..t+H-1
        pred = rollout(src.dreamer(wm, e_t[None], use_cache), torch.from_numpy(acts).long().to(src.device))
        out.append((src.real_uint8(r + np.arange(horizon + 1)), to_uint8(src.decode01(pred[0]))))
    return out


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return img.repeat(k, -3).repeat(k, -2)


def strip_image(examples: list[tuple[np.ndarray, np.ndarray]], scale: int = 2) -> np.ndarray:
    """For each example two rows: real t+1..t+H, dreamed t+1..t+H (2 px gaps)."""
    rows = []
    for real, dream in examples:
        for seq in (real[1:], dream):
            tiles = [np.pad(f, ((1, 1), (1, 1), (0, 0)), constant_values=40) for f in seq]
            rows.append(np.concatenate(tiles, 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return _upscale(np.concatenate(rows[:-1], 0), scale)


def gif_frames(examples: list[tuple[np.ndarray, np.ndarray]], scale: int = 3) -> list[np.ndarray]:
    """Per step one image: each example's real | dreamed frame side by side, examples stacked."""
    frames = []
    for k in range(len(examples[0][1])):
        rows = [np.concatenate([real[k + 1], np.full((84, 2, 3), 255, np.uint8), dream[k]], 1)
                for real, dream in examples]
        frames.append(_upscale(np.concatenate([np.pad(r, ((2, 2), (0, 0), (0, 0))) for r in rows], 0), scale))
    return frames


Panel = tuple[str, str, list[tuple[str, list[Any], str]]]
"""(title, y label, [(legend label, values per horizon, matplotlib style)])."""


def _plot(path: Path, hs: list[int], panels: list[Panel]) -> None:
    fig = Figure(figsize=(4.6 * len(panels), 3.4), dpi=110)
    for ax, (title, ylabel, series) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for label, ys, style in series:
            pts = [(h, y) for h, y in zip(hs, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=label)
        ax.set_xlabel("horizon (dreamed steps)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def write_report(out_dir: str | Path, result: dict[str, Any], examples: list[tuple[np.ndarray, np.ndarray]]
                 ) -> Path:
    """`report.md` with accuracy/PSNR-per-horizon plots, a real-vs-dream strip (PNG) and GIF; returns the page."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    m, curve = result["metrics"], result["metrics"]["per_horizon"]
    zeros = [0.0] * len(curve["h"])
    _plot(d / "accuracy.png", curve["h"], [
        ("Open-loop token accuracy", "accuracy", [("model", curve["acc"], "o-"),
                                                  ("copy-last", curve["copy_last_acc"], "s--")]),
        ("On tokens that changed since frame t", "accuracy", [("model", curve["changed_acc"], "o-"),
                                                              ("copy-last (always 0)", zeros, "s--")]),
    ])
    parts = [f"# neuroplay eval: {result['checkpoint'].get('dir', '')}", "",
             f"Tier **{result['tier']}**, split **{result['split']}**, {m['n_samples']} samples "
             f"({m['n_samples_rollout']} rolled out to h{m['horizon']}); data: "
             + ", ".join(f"`{Path(f['path']).name}` ({f['sha256'][:12]})" for f in result["data"]) + ".", "",
             table(m, markdown=True), "", "![accuracy per horizon](accuracy.png)"]
    if any(v is not None for v in curve["psnr"]):
        series = [("model", curve["psnr"], "o-"), ("copy-last", curve["copy_last_psnr"], "s--")]
        _plot(d / "psnr.png", curve["h"], [("Open-loop PSNR, pixels in [0, 1]", "PSNR (dB)", series)])
        parts.append("![PSNR per horizon](psnr.png)")
    if examples:
        iio.imwrite(d / "rollouts.png", strip_image(examples))
        iio.imwrite(d / "rollouts.gif", gif_frames(examples), duration=250, loop=0)
        parts += ["", "Real frames (upper row) and the open-loop dream of them (lower row), recorded actions:", "",
                  "![real vs dreamed](rollouts.png)", "", "![real | dreamed, animated](rollouts.gif)"]
    checks = beats_copy_last(m)
    parts += ["", "Beats copy-last: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in checks.items()
                                                  if v is not None) + ".", ""]
    page = d / "report.md"
    page.write_text("\n".join(parts))
    return page
