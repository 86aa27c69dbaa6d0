"""Training: importance weights, a tiny end-to-end run on real frames, exact resume, clean stops, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.checkpoint import CheckpointError, load_checkpoint, load_pair
from neuroplay.cli import COMMANDS
from neuroplay.cli import main as cli
from training.common import TrainingStopped
from training.importance import ImportanceConfig, importance_weights, weighted_ce
from training.wm import WMTrainConfig, train_wm


def logs(run: Path, stage: str) -> list[dict]:
    return [json.loads(line) for line in (run / f"{stage}_log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- importance weights
def grid(ball: tuple[int, int] | None) -> torch.Tensor:
    g = torch.zeros(21, 16, dtype=torch.long)
    if ball is not None:
        g[ball] = 5
    return g.flatten()


DIST = 1 - torch.eye(32)


def test_static_grid_gives_all_ones() -> None:
    hist = torch.stack([grid(None)] * 4)[None]
    w = importance_weights(hist, grid(None)[None], DIST)
    assert torch.equal(w, torch.ones(1, 336))


def test_moving_ball_gets_the_highest_weights() -> None:
    hist = torch.stack([grid((10, 2)), grid((10, 3)), grid((10, 4)), grid((10, 5))])[None]
    target = grid((10, 6))[None]
    w = importance_weights(hist, target, DIST, ImportanceConfig())[0].view(21, 16)
    assert w[10, 6] == w.max()  # where the ball arrives: new motion, a spike
    assert w[10, 5] > 3.0  # where it leaves
    assert w[0, 0] == 1.0 and w[10, 6] > 3.0


def test_cap_bounds_the_ratio_to_the_median() -> None:
    torch.manual_seed(0)
    hist, target = torch.randint(0, 32, (8, 4, 336)), torch.randint(0, 32, (8, 336))
    hist[:, :, :300] = 0
    target[:, :300] = 0
    cfg = ImportanceConfig(motion_scale=50.0, eventness_scale=50.0, max_ratio=6.0)
    w = importance_weights(hist, target, DIST, cfg)
    ratio = w.quantile(0.95, dim=-1) / w.median(dim=-1).values
    assert (ratio <= 6.0 + 1e-5).all() and (w >= 1).all()


def test_weighted_ce_equals_plain_ce_with_unit_weights() -> None:
    logits, target = torch.randn(2, 336, 32), torch.randint(0, 32, (2, 336))
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), target.reshape(-1))
    torch.testing.assert_close(weighted_ce(logits, target, torch.ones(2, 336)), plain)


# ---------------------------------------------------------------- end to end
def test_tiny_pipeline_learns(tiny_run: Path) -> None:
    vq_val = [r["val_psnr"] for r in logs(tiny_run, "vqvae") if "val_psnr" in r]
    assert len(vq_val) >= 3 and vq_val[-1] > vq_val[0] + 2 and vq_val[-1] > 18  # dB, held-out episodes
    canary = [r for r in logs(tiny_run, "wm") if "val_loss" in r]
    assert canary[-1]["val_loss"] < 0.7 * canary[0]["val_loss"]
    assert canary[-1]["val_acc"] > 0.95
    vq, wm, info = load_pair(tiny_run)
    assert info["wm"]["vq_sha256"] == info["vqvae"]["weights_sha256"]
    tokens = np.load(tiny_run / "atari_tokens_hires.npz", allow_pickle=False)
    assert tokens["tokens"].dtype == np.uint8 and tokens["tokens"].shape[1:] == (21, 16)


def wm_cfg(run: Path, tiny_run: Path, **kw: object) -> WMTrainConfig:
    base = dict(data=[str(tiny_run / "atari_tokens_hires.npz")], vq_checkpoint=str(tiny_run / "vqvae"),
                preset="tiny", run_dir=str(run), device="cpu", progress_bar=False, batch_size=4, seq_frames=6,
                warmup=2, val_samples=16, eval_every=1000, save_every=5, steps=10, rollout_ratio=0.5, amp="off")
    base.update(kw)
    return WMTrainConfig(**base)  # type: ignore[arg-type]


def interrupt_at(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th optimizer step raise KeyboardInterrupt, as Ctrl-C would."""
    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def step(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


def test_ctrl_c_then_resume_continues_bit_for_bit(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One thread: with more, CPU embedding backward sums in a varying order, so even two fresh runs
    # differ in the last bits; resume itself restores everything (weights, optimizer, RNG, sampler).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    request_restore = threads
    train_wm(wm_cfg(tmp_path / "a", tiny_run))
    with monkeypatch.context() as m:
        interrupt_at(m, 7)
        with pytest.raises(KeyboardInterrupt):
            train_wm(wm_cfg(tmp_path / "b", tiny_run))
    assert json.loads((tmp_path / "b" / "last" / "wm" / "progress.json").read_text())["step"] == 6
    train_wm(wm_cfg(tmp_path / "b", tiny_run, resume=True))
    a, _ = load_checkpoint(tmp_path / "a" / "last" / "wm")
    b, _ = load_checkpoint(tmp_path / "b" / "last" / "wm")
    monkeypatch.undo()
    torch.set_num_threads(request_restore)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.wm as wm_mod

    train_wm(wm_cfg(tmp_path / "c", tiny_run, steps=5))
    real_ce = wm_mod.weighted_ce
    monkeypatch.setattr(wm_mod, "weighted_ce", lambda *a: real_ce(*a) * float("nan"))
    with pytest.raises(TrainingStopped, match="loss became nan at step 5"):
        train_wm(wm_cfg(tmp_path / "c", tiny_run, resume=True))
    assert json.loads((tmp_path / "c" / "last" / "wm" / "progress.json").read_text())["step"] == 5
    load_checkpoint(tmp_path / "c" / "last" / "wm")


def test_resume_with_another_preset_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    train_wm(wm_cfg(tmp_path / "d", tiny_run, steps=5))
    with pytest.raises(Exception, match="different model config"):
        train_wm(wm_cfg(tmp_path / "d", tiny_run, preset="tiny-full", resume=True))


def test_init_starts_from_a_checkpoint_and_refuses_another_config(tmp_path: Path, tiny_run: Path) -> None:
    train_wm(wm_cfg(tmp_path / "e", tiny_run, steps=1, lr=0.0, init=str(tiny_run / "wm")))
    a, _ = load_checkpoint(tiny_run / "wm")
    b, _ = load_checkpoint(tmp_path / "e" / "last" / "wm")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k  # lr 0: one step leaves the fine-tuning start as it was
    with pytest.raises(CheckpointError, match="differs from the preset"):
        train_wm(wm_cfg(tmp_path / "f", tiny_run, preset="tiny-full", init=str(tiny_run / "wm")))


def test_minutes_budget_stops_decays_and_resumes_with_what_is_left(
    tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--minutes` ends a run on the clock, the cosine reaching its floor by the clock, and a resumed run
    spends only the rest. The clock is faked: every reading advances it 5 s."""
    import types

    import training.wm as wm_mod

    now = {"t": 0.0}

    def clock() -> float:
        now["t"] += 5.0
        return now["t"]

    monkeypatch.setattr(wm_mod, "time", types.SimpleNamespace(time=clock))
    run = tmp_path / "m"
    train_wm(wm_cfg(run, tiny_run, steps=1000, minutes=1.0, log_every=1, lr=1e-3))
    done = json.loads((run / "last" / "wm" / "progress.json").read_text())["step"]
    assert 3 <= done < 20  # a few 5-s readings a step against a 60-s budget; far from the 1000 steps
    lrs = [r["lr"] for r in logs(run, "wm") if "lr" in r]
    assert len(lrs) == done and lrs[2:] == sorted(lrs[2:], reverse=True)  # warm-up (2 steps), then only down
    assert lrs[-1] < 0.3e-3  # the clock, not the 1000 steps, took the cosine near its floor (1e-4)
    assert (run / "wm" / "model.safetensors").exists()  # the final canary kept a best checkpoint
    train_wm(wm_cfg(run, tiny_run, steps=1000, minutes=1.0, resume=True))  # the budget is spent: no step
    assert json.loads((run / "last" / "wm" / "progress.json").read_text())["step"] == done
    train_wm(wm_cfg(run, tiny_run, steps=1000, minutes=2.0, resume=True))  # one more minute
    assert json.loads((run / "last" / "wm" / "progress.json").read_text())["step"] > done


def test_val_split_is_fixed_by_split_seed_not_seed(tmp_path: Path, tiny_run: Path) -> None:
    """Another --seed (batches, init) keeps the same val episodes and samples, so a fine-tune never trains
    on what `neuroplay eval` holds out; --split-seed moves them."""
    import json

    def val_of(name: str, **kw: object) -> dict:
        train_wm(wm_cfg(tmp_path / name, tiny_run, steps=1, eval_every=1, **kw))
        lines = (tmp_path / name / "wm_log.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if "copy_last_acc" in r][-1]

    a, b, c = val_of("a", seed=0), val_of("b", seed=1), val_of("c", seed=0, split_seed=1)
    assert a["copy_last_acc"] == b["copy_last_acc"]  # the copy-last score depends on the val samples only
    assert a["val_loss"] != b["val_loss"]  # ... while the runs themselves differ
    assert c["copy_last_acc"] != a["copy_last_acc"]


# ---------------------------------------------------------------- CLI
@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        cli([command, "--help"])
    assert e.value.code == 0 and command in capsys.readouterr().out


def test_train_all_from_the_cli(tmp_path: Path, breakout_file: Path) -> None:
    run = tmp_path / "cli"
    args = ["train", "all", "--data", str(breakout_file), "--preset", "tiny", "--run-dir", str(run),
            "--vq-steps", "8", "--wm-steps", "4", "--device", "cpu", "--no-progress-bar"]
    assert cli(args) == 0
    assert (run / "vqvae" / "model.safetensors").exists() and (run / "wm" / "config.json").exists()
    assert cli([*args, "--resume", "--wm-steps", "6"]) == 0  # finished stages are skipped
    assert json.loads((run / "last" / "wm" / "progress.json").read_text())["step"] == 6
    assert cli(["train", "wm", "--data", str(tmp_path / "missing.npz"), "--run-dir", str(run)]) == 2


def test_select_play_keeps_the_checkpoint_that_plays_best(tmp_path: Path, tiny_run: Path) -> None:
    """--select play: each check runs the eval's probes on the val episodes (real dreams of the tiny model,
    decoded by its VQ-VAE); <run>/wm holds the step with the best play score, not the lowest loss."""
    import json
    import shutil

    data = tmp_path / "tokens.npz"
    shutil.copy(tiny_run / "atari_tokens_hires.npz", data)
    (tmp_path / "gold_eval_indices.json").write_text("{}")  # another file's eval indices beside the data: unused
    run = tmp_path / "play"
    train_wm(wm_cfg(run, tiny_run, data=[str(data)], steps=3, eval_every=1, select="play", play_states=2,
                    lr=3e-3))
    rows = [r for r in map(json.loads, (run / "wm_log.jsonl").read_text().splitlines()) if "play_score" in r]
    assert [r["step"] for r in rows] == [1, 2, 3] and (run / "play_indices.json").exists()
    assert all(0.0 <= r["play_score"] <= 1.0 and "reset_launch_rate" in r for r in rows)
    kept = json.loads((run / "wm" / "config.json").read_text())
    best = max(rows, key=lambda r: (r["play_score"], -r["step"]))  # the first of the best
    assert kept["step"] == best["step"] and kept["metrics"]["play_score"] == best["play_score"]
    assert kept["step"] != min(rows, key=lambda r: r["val_loss"])["step"]  # here the two rules disagree
    with pytest.raises(ValueError, match="--select"):
        train_wm(wm_cfg(tmp_path / "bad", tiny_run, select="fun"))


def test_resume_under_the_other_select_rule_restarts_the_best(tmp_path: Path, tiny_run: Path) -> None:
    """A loss and a play score are not comparable: resuming a --select play run with --select loss must not
    compare the val loss with the old 1 - play score (it would never win), so the next check is kept."""
    import json
    import shutil

    data = tmp_path / "tokens.npz"
    shutil.copy(tiny_run / "atari_tokens_hires.npz", data)
    run = tmp_path / "r"
    train_wm(wm_cfg(run, tiny_run, data=[str(data)], steps=2, eval_every=1, select="play", play_states=2))
    assert json.loads((run / "wm" / "config.json").read_text())["step"] in (1, 2)
    train_wm(wm_cfg(run, tiny_run, data=[str(data)], steps=3, eval_every=1, select="loss", resume=True))
    kept = json.loads((run / "wm" / "config.json").read_text())
    assert kept["step"] == 3 and "play_score" not in kept["metrics"]


def test_self_forcing_feeds_the_models_own_frames_and_keeps_real_targets(tmp_path: Path, tiny_run: Path) -> None:
    """--self-forcing p: frames after a clip's first enter as the model's own 1-step argmax prediction of them
    with probability p (none at 0, all at 1), the first frame and every target stay real, and a run logs how
    many tokens of the swapped frames were wrong."""
    from training.wm import self_forced, sequence_loss
    from training.wm_data import TokenSampler

    model, _ = load_checkpoint(tiny_run / "wm")
    model.eval()
    clips = TokenSampler.from_files([str(tiny_run / "atari_tokens_hires.npz")], 0.1, 0, 1.0).sequence_batch(
        3, 6, torch.Generator().manual_seed(0))
    frames, actions = clips["frames"], clips["actions"]  # (3, 6, 336), (3, 5)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        pred = model(frames, actions, sequence=True).logits.argmax(-1)  # (3, 5, 336)
    none, err0 = self_forced(model, frames, actions, 0.0, g())
    every, err1 = self_forced(model, frames, actions, 1.0, g())
    assert torch.equal(none, frames) and float(err0) == 0.0
    assert torch.equal(every[:, 0], frames[:, 0]) and torch.equal(every[:, 1:], pred)
    assert float(err1) == pytest.approx((pred != frames[:, 1:]).float().mean().item())
    assert 0.0 < float(err1) < 0.5  # the tiny model is wrong on some tokens, right on most
    half, _ = self_forced(model, frames, actions, 0.5, g())
    swapped = (half[:, 1:] != frames[:, 1:]).any(-1)  # (3, 5): frames that came from the model and differ
    assert swapped.any() and not swapped.all()
    dist, imp = 1 - torch.eye(model.cfg.n_vocab), ImportanceConfig()
    with torch.no_grad():
        real, _ = sequence_loss(model, frames, actions, dist, imp, 4)
        same, _ = sequence_loss(model, frames, actions, dist, imp, 4, inputs=frames)
        forced, _ = sequence_loss(model, frames, actions, dist, imp, 4, inputs=every)
    assert torch.equal(real, same) and not torch.equal(real, forced)

    run = tmp_path / "sf"
    train_wm(wm_cfg(run, tiny_run, steps=4, rollout_ratio=0.0, log_every=1, self_forcing=0.5))
    errs = [r["self_forced_token_err"] for r in logs(run, "wm") if "self_forced_token_err" in r]
    assert len(errs) == 4 and all(0.0 <= e <= 1.0 for e in errs)
    with pytest.raises(ValueError, match="--self-forcing"):
        train_wm(wm_cfg(tmp_path / "bad", tiny_run, self_forcing=1.5))
    with pytest.raises(ValueError, match="--self-forcing needs a block-causal preset"):
        train_wm(wm_cfg(tmp_path / "full", tiny_run, preset="tiny-full", self_forcing=0.5))
