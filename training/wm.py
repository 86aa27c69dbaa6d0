"""`neuroplay train wm`: the world-model objective of the reference design, on cached tokens.

Each step is, by a seeded coin with P(rollout) = rollout_ratio:
- a standard batch: weighted CE of one step. For `spec` (full attention) that is B samples of
  (4-frame history, action, next frame). For block-causal presets (`lite`, `tiny`) it is B clips of
  `seq_frames` consecutive frames trained in one pass under the play-time mask, a target for every frame
  (the issue's "train it the way it runs"; ~10x cheaper per target on a CPU). Fused presets (`lite2`) run
  frames 0..n-2 only, each under the action taken at it: one pass of 336 tokens per target;
- a K-step open-loop rollout: from a 4-frame history, K recorded actions; loss sum_k discount^k *
  weighted_CE(logits_k, target_k) / sum_k discount^k; the next history frame is the ground truth with
  probability `teacher_forcing` (per sample), else the argmax prediction; the history is rolled (for fused
  presets the history's actions too: each history frame is conditioned on the action taken at it).
With `--self-forcing p` (block-causal sequence batches) a clip's frames after the first each enter, with
probability p, as the model's own 1-step argmax prediction of them (one no-grad teacher-forced pass), while
every target stays the real frame: parallel scheduled sampling (Duckworth et al., 2019). A rollout batch can
only do this from a 4-frame history; here the frames the model drew sit inside the clip's deep context.
Per-token hybrid importance weights (`training/importance.py`) weight every CE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from neuroplay.checkpoint import load_tokenizer, read_info, save_checkpoint
from neuroplay.config import PRESETS, SHIPPED_PRESET, get_preset
from neuroplay.device import resolve_device
from neuroplay.errors import UsageError
from neuroplay.models.world_model import TemporalWorldModel
from training.common import (
    RunLogger,
    agree_any,
    autocast,
    check_finite,
    init_distributed,
    load_resume,
    load_weights,
    lr_at,
    progress,
    save_resume,
    seed_step,
    step_generator,
)
from training.importance import ImportanceConfig, importance_weights, motion_distances, weighted_ce
from training.wm_data import TokenSampler


@dataclass
class WMTrainConfig:
    """Flags of `neuroplay train wm` (the reference design's values as defaults)."""

    data: list[str] = field(default_factory=list)
    """Token files (.npz from `neuroplay train tokenize`)."""
    preset: str = field(default=SHIPPED_PRESET, metadata={"choices": PRESETS})
    """Model preset (`neuroplay/config.py`); the default is the shipped model's."""
    run_dir: str = "runs/default"
    """Run folder: checkpoints, logs, TensorBoard."""
    vq_checkpoint: str = ""
    """VQ-VAE folder used for codebook distances and image logs (default: <run_dir>/vqvae)."""
    steps: int = 20000
    """Optimizer steps."""
    epochs: float = 0.0
    """Train this many epochs instead (0: use --steps)."""
    minutes: float = 0.0
    """Wall-clock budget: stop after this many minutes of training, the cosine keyed to whichever of time and
    steps runs out first (0: steps only). Resumed runs spend only what is left."""
    batch_size: int = 8
    """Samples (or clips) per batch."""
    lr: float = 5e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    warmup: int = 500
    """Linear warm-up steps."""
    rollout_steps: int = 5
    """K of the K-step unroll."""
    rollout_ratio: float = 0.5
    """Share of batches that are K-step rollouts."""
    teacher_forcing: float = 0.1
    """Probability that the next history frame is the ground truth in a rollout."""
    step_discount: float = 0.7
    """Discount of future rollout steps."""
    motion_scale: float = 2.0
    """Importance: embedding-distance motion."""
    eventness_scale: float = 2.0
    """Importance: spike detection."""
    persistence_scale: float = 1.0
    """Importance: multi-frame motion."""
    max_ratio: float = 6.0
    """Importance: cap of the 95th percentile over the median."""
    code_distance: Literal["codebook", "binary"] = "codebook"
    """Importance: motion as the distance between the codebook vectors of the two codes (the reference), or 1 for
    any change (a patch code's pixel distance rates the 2-pixel ball a sixth of a brick)."""
    seq_frames: int = 12
    """Frames per clip in block-causal sequence batches."""
    expert_weight: float = 5.0
    """Sampling weight of human episodes."""
    event_weight: float = 4.0
    """Train windows with an event (launch, bounce, hit, lost ball) in their targets are drawn 1+this as often."""
    lost_weight: float = 0.0
    """Train windows with a lost ball (gone low, or the lives digit counting down) are drawn this much more on top."""
    self_forcing: float = 0.0
    """Sequence batches: share of a clip's frames (all but the first) fed as the model's own 1-step prediction of
    them, the targets staying real. The dream reads its own frames, so a countdown drawn halfway or a ball drawn
    twice sits in its history; this trains it to go on from such frames to the real game."""
    val_fraction: float = 0.1
    """Share of episodes held out (episode-based, seeded)."""
    val_samples: int = 500
    """Fixed val samples of the canary check."""
    split_seed: int = 0
    """Seed of the train/val episode split and the val samples: keep it when changing --seed, so val
    (and `neuroplay eval`, which splits the same way) stays unseen by every run."""
    seed: int = 0
    """Seed of the batches, coins and init."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 where fast), bf16 or off."""
    compile: bool = False
    """torch.compile the model (slow start-up)."""
    log_every: int = 25
    """Steps between scalar logs."""
    eval_every: int = 500
    """Steps between canary checks (best checkpoint); also once per epoch."""
    select: Literal["loss", "play"] = "loss"
    """Which checkpoint <run_dir>/wm keeps: loss (lowest canary val loss) or play (highest play score: the
    eval's gameplay probes on val episodes at each canary check, `neuroplay/evaluation/playscore.py`)."""
    play_states: int = 12
    """--select play: states of each probe in the play check (more: steadier, slower)."""
    save_every: int = 250
    """Steps between resumable checkpoints."""
    image_every: int = 1000
    """Steps between real-vs-rollout image grids."""
    resume: bool = False
    """Continue the run in run_dir from its last checkpoint."""
    init: str = ""
    """Start from this world-model checkpoint's weights (fine-tuning; fresh optimizer and schedule)."""
    progress_bar: bool = True
    """Show a progress bar."""


def rollout_loss(
    model: torch.nn.Module, hist: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
    dist: torch.Tensor, imp: ImportanceConfig, cfg: WMTrainConfig, g: torch.Generator,
    hist_actions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-step open-loop unroll; returns (loss, accuracy of step 1).

    `hist_actions` (B, 3): the actions taken at the history frames but the last, which fused models (lite2)
    condition them on; rolled with the history (other models ignore them).
    """
    total, norm, acc1 = 0.0, 0.0, torch.zeros(())
    for k in range(actions.shape[1]):
        logits = model(hist, actions[:, k], history_actions=hist_actions).logits  # (B, 336, V)
        target = targets[:, k]
        w = importance_weights(hist, target, dist, imp)
        disc = cfg.step_discount ** (k + 1)
        total = total + disc * weighted_ce(logits, target, w)
        norm += disc
        pred = logits.argmax(-1)
        if k == 0:
            acc1 = (pred == target).float().mean()
        tf = torch.rand(hist.shape[0], generator=g) < cfg.teacher_forcing
        nxt = torch.where(tf.to(hist.device)[:, None], target, pred)
        hist = torch.cat([hist[:, 1:], nxt[:, None]], 1)  # roll: (B, 4, 336)
        if hist_actions is not None:
            hist_actions = torch.cat([hist_actions[:, 1:], actions[:, k : k + 1]], 1)  # roll: (B, 3)
    return total / norm, acc1


def self_forced(model: torch.nn.Module, frames: torch.Tensor, actions: torch.Tensor, share: float,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (B, n, 336) with each frame after the first replaced, with probability `share`, by the model's argmax
    prediction of it from the real frames before it. Returns (inputs (B, n, 336), share of the replaced frames'
    tokens that differ from the real ones: the errors the batch now holds)."""
    with torch.no_grad():
        pred = model(frames, actions, sequence=True).logits.argmax(-1)  # (B, n-1, 336): frames 1..n-1
    swap = (torch.rand(frames.shape[0], frames.shape[1] - 1, generator=g) < share).to(frames.device)  # (B, n-1)
    inputs = torch.cat([frames[:, :1], torch.where(swap[..., None], pred, frames[:, 1:])], 1)  # (B, n, 336)
    wrong = (pred != frames[:, 1:])[swap]  # (swapped frames, 336)
    return inputs, wrong.float().mean() if wrong.numel() else torch.zeros(())


def sequence_loss(
    model: torch.nn.Module, frames: torch.Tensor, actions: torch.Tensor, dist: torch.Tensor,
    imp: ImportanceConfig, w: int, inputs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-causal pass over clips (B, n, 336), teacher-forced or on `inputs` (B, n, 336) (`self_forced`), with
    the real `frames` as targets; returns (loss, accuracy)."""
    n = frames.shape[1]
    x = frames if inputs is None else inputs
    logits = model(x, actions, sequence=True).logits  # (B, n-1, 336, V)
    idx = (torch.arange(n - 1)[:, None] - (w - 1) + torch.arange(w)).clamp(min=0)  # (n-1, w)
    hist = x[:, idx.to(x.device)]  # (B, n-1, w, 336), early steps padded with frame 0: what the model read
    target = frames[:, 1:]
    weights = importance_weights(hist, target, dist, imp)
    acc = (logits.argmax(-1) == target).float().mean()
    return weighted_ce(logits, target, weights), acc


@torch.no_grad()
def canary(model: TemporalWorldModel, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """1-step val figures beside copy-last: loss, token acc, acc on tokens that change."""
    model.eval()
    hist, action, target, h_act = (batch[k].to(device) for k in ("history", "action", "target", "history_actions"))
    logits = torch.cat([model(hist[i : i + 32], action[i : i + 32], history_actions=h_act[i : i + 32]).logits
                        for i in range(0, len(hist), 32)])
    pred, last = logits.argmax(-1), hist[:, -1]
    changed = target != last
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
    return {
        "val_loss": loss.item(),
        "val_acc": (pred == target).float().mean().item(),
        "copy_last_acc": (last == target).float().mean().item(),
        "changed_token_acc": (pred == target)[changed].float().mean().item() if changed.any() else 1.0,
    }


SHOWN = ("val_loss", "val_acc", "copy_last_acc", "changed_token_acc", "play_score")
"""Canary figures printed at each check (the log and TensorBoard get every play figure too)."""


def play_checker(cfg: WMTrainConfig, vq_dir: Path, device: torch.device) -> Any:
    """--select play: model -> play figures (floats) on the canary's val samples of the token files, frozen in
    the run folder (`play_indices.json`; the data's folder may hold another file's eval indices)."""
    from neuroplay.evaluation.playscore import play_check
    from neuroplay.evaluation.suite import frozen_samples

    if not (vq_dir / "config.json").exists():
        raise UsageError(f"--select play needs the VQ-VAE to see the dream: no checkpoint in {vq_dir} "
                         "(give --vq-checkpoint)")
    vq, vq_info = load_tokenizer(vq_dir, device)
    data, samples = frozen_samples(cfg.data, "canary", "val", Path(cfg.run_dir) / "play_indices.json",
                                   val_fraction=cfg.val_fraction, seed=cfg.split_seed)
    data.check_tokens_of(cfg.data, vq_info, vq_dir)  # else it would score noise

    def check(model: torch.nn.Module) -> dict[str, float]:
        m = play_check(vq, model, data, samples, states=cfg.play_states, seed=cfg.split_seed, device=device)
        return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    return check


def train_wm(cfg: WMTrainConfig) -> Path:
    """Train, checkpointing into `<run_dir>/wm` (best canary by --select) and `<run_dir>/last/wm` (resume)."""
    if cfg.select not in ("loss", "play"):
        raise UsageError(f"--select must be loss or play, got {cfg.select!r}")
    if cfg.play_states < 1:
        raise UsageError(f"--play-states must be >= 1, got {cfg.play_states}")
    if not 0.0 <= cfg.self_forcing <= 1.0:
        raise UsageError(f"--self-forcing must be in [0, 1], got {cfg.self_forcing}")
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if dist_info.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    preset = get_preset(cfg.preset)
    if cfg.self_forcing > 0 and not preset.wm.clip_training:
        raise UsageError(f"--self-forcing needs a block-causal preset (it acts on sequence batches); {cfg.preset} "
                         "trains on rollouts, whose history is already the model's own")
    run = Path(cfg.run_dir)
    data = TokenSampler.from_files(cfg.data, cfg.val_fraction, cfg.split_seed, cfg.expert_weight, cfg.event_weight,
                                   cfg.lost_weight)
    vq_dir = Path(cfg.vq_checkpoint) if cfg.vq_checkpoint else run / "vqvae"
    vq = load_tokenizer(vq_dir)[0] if (vq_dir / "config.json").exists() else None
    dist = motion_distances(None if vq is None else vq.code_vectors(), preset.wm.n_vocab, cfg.code_distance).to(device)
    imp = ImportanceConfig(cfg.motion_scale, cfg.eventness_scale, cfg.persistence_scale, cfg.max_ratio)

    epoch_steps = max(1, data.n_train_transitions // (cfg.batch_size * dist_info.world))
    if cfg.epochs > 0:
        cfg = replace(cfg, steps=max(1, int(cfg.epochs * epoch_steps)))
    torch.manual_seed(cfg.seed)
    model = TemporalWorldModel(preset.wm).to(device)
    if preset.wm.code_features:  # fixed from the tokenizer; --resume and --init load the saved ones over these
        if vq is None:
            raise UsageError(f"--preset {cfg.preset}: its world model reads the tokenizer's code features; no "
                             f"tokenizer checkpoint in {vq_dir} (give --vq-checkpoint)")
        vectors = vq.code_vectors()
        if tuple(vectors.shape) != (preset.wm.n_vocab, preset.wm.code_features):
            raise UsageError(f"{vq_dir}: its code vectors are {tuple(vectors.shape)}, --preset {cfg.preset} reads "
                             f"({preset.wm.n_vocab}, {preset.wm.code_features})")
        model.set_code_features(vectors.to(device))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n and "bias" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n and "bias" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
    last_dir, best_dir = run / "last" / "wm", run / "wm"
    step, best, spent = 0, None, 0.0
    if cfg.resume:
        step, best, spent = load_resume(last_dir, model, opt)
        was = read_info(last_dir).get("train_config", {}).get("select", "loss")
        if was != cfg.select and best is not None:  # a loss and a play score are not comparable
            print(f"wm: --select {cfg.select} (the run kept by {was}): the best so far starts again at the next check")
            best = None
    elif cfg.init:
        load_weights(Path(cfg.init), model, "--init")
    net: Any = model
    if dist_info.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net)
    info = {"data": [str(p) for p in cfg.data], "stage": "wm", "vq_sha256": data.vq_sha256}
    val = data.val_batch(cfg.val_samples, cfg.split_seed)
    check = play_checker(cfg, vq_dir, device) if cfg.select == "play" and dist_info.main else None
    val_roll = data.rollout_batch(1, cfg.rollout_steps, torch.Generator().manual_seed(cfg.split_seed), split="val")
    main = dist_info.main
    log = RunLogger(run, "wm", enabled=main)
    bar = progress(cfg.steps, step, "wm", cfg.progress_bar and main)
    t0, tokens_seen, w = time.time(), 0, preset.wm.max_history
    budget = cfg.minutes * 60.0
    elapsed = lambda: spent + time.time() - t0  # training seconds, resumed runs included
    time_up = budget > 0 and elapsed() >= budget
    try:
        while step < cfg.steps and not time_up:
            model.train()
            seed_step(cfg.seed, step, dist_info.rank)
            g = step_generator(cfg.seed, step, dist_info.rank)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup, elapsed() / budget if budget else 0.0)
            is_rollout = torch.rand((), generator=g).item() < cfg.rollout_ratio
            extra: dict[str, torch.Tensor] = {}  # figures of this step, read (a device sync) only when logged
            with autocast(device, cfg.amp):
                if is_rollout:
                    b = data.rollout_batch(cfg.batch_size, cfg.rollout_steps, g)
                    loss, acc = rollout_loss(net, b["history"].to(device), b["actions"].to(device),
                                             b["targets"].to(device), dist, imp, cfg, g,
                                             b["history_actions"].to(device))
                    n_targets = cfg.batch_size * cfg.rollout_steps
                elif model.clip_training:
                    b = data.sequence_batch(cfg.batch_size, cfg.seq_frames, g)
                    frames, acts = b["frames"].to(device), b["actions"].to(device)
                    inputs = None
                    if cfg.self_forcing > 0:
                        inputs, sf_err = self_forced(model, frames, acts, cfg.self_forcing, g)
                        extra["self_forced_token_err"] = sf_err
                    loss, acc = sequence_loss(net, frames, acts, dist, imp, w, inputs)
                    n_targets = cfg.batch_size * (cfg.seq_frames - 1)
                else:
                    b = data.rollout_batch(cfg.batch_size, 1, g)
                    hist, target = b["history"].to(device), b["targets"][:, 0].to(device)
                    logits = net(hist, b["actions"][:, 0].to(device)).logits  # spec: no history actions
                    loss = weighted_ce(logits, target, importance_weights(hist, target, dist, imp))
                    acc = (logits.argmax(-1) == target).float().mean()
                    n_targets = cfg.batch_size
            check_finite(loss, step, "wm", last_dir)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            tokens_seen += n_targets * preset.wm.n_tokens * dist_info.world
            bar.update(1)
            time_up = budget > 0 and agree_any(elapsed() >= budget, dist_info, device)
            final = step == cfg.steps or time_up
            if main and (step % cfg.log_every == 0 or final):
                tps = tokens_seen / (time.time() - t0)
                log.scalars(step, {"loss": loss.item(), "train_acc": acc.item(), "grad_norm": float(gnorm),
                                   "rollout": float(is_rollout), "tokens_per_s": tps, "lr": opt.param_groups[0]["lr"],
                                   **data.drawn_stats(), **{k: v.item() for k, v in extra.items()}})
                bar.set_postfix(loss=f"{loss.item():.4f}", acc=f"{acc.item():.4f}", tok_s=f"{tps:.0f}")
            if main and (step % cfg.eval_every == 0 or step % epoch_steps == 0 or final):
                m = canary(model, val, device)
                m.update(check(model) if check is not None else {})
                log.scalars(step, m)
                bar.write(f"wm step {step}: " + ", ".join(f"{k} {m[k]:.4f}" for k in SHOWN if k in m))
                score = 1.0 - m.get("play_score", 0.0) if check is not None else m["val_loss"]  # lower is better
                if best is None or score < best:
                    best = score
                    save_checkpoint(best_dir, model, preset.name, {**info, "step": step, "metrics": m})
            if main and vq is not None and step % cfg.image_every == 0:
                from training.wm_images import rollout_grid

                log.image(step, "real_vs_rollout", rollout_grid(model, vq, val_roll, device))
            if main and (step % cfg.save_every == 0 or final):
                save_resume(last_dir, model, preset.name, opt, step, best, cfg, info, elapsed())
    except KeyboardInterrupt:
        if main:
            save_resume(last_dir, model, preset.name, opt, step, best, cfg, info, elapsed())
            bar.close()
            print(f"\nwm: interrupted at step {step}; saved {last_dir} (continue with --resume)")
        raise
    finally:
        bar.close()
        log.close()
    if main and time_up:
        print(f"wm: the {cfg.minutes:g}-minute budget is spent at step {step}; saved {last_dir}")
    if main and not (best_dir / "model.safetensors").exists():
        save_checkpoint(best_dir, model, preset.name, {**info, "step": step})
    return best_dir
