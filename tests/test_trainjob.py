"""Training from the game's menu: the job's commands and progress, chained jobs, and the Train screen's three
jobs (the shipped preset from scratch, the shipped pair continued on a recording, a fresh install's first Start)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neuroplay.config import SHIPPED_CHECKPOINT, SHIPPED_PRESET
from neuroplay.trainjob import TrainJob, TrainSpec


def test_trainjob_parsing_and_commands(tmp_path: Path) -> None:
    from neuroplay.trainjob import Progress, command, parse_line

    p = Progress()
    assert parse_line("wm:  12%|#2        | 24/200 [00:03<00:25,  7.01it/s, loss=0.5123, acc=0.8300]", p)
    assert (p.stage, p.step, p.total, p.eta, p.rate) == ("wm", 24, 200, "00:25", "7.01it/s")
    assert p.metrics == {"loss": 0.5123, "acc": 0.83} and p.fraction == pytest.approx(0.12)
    assert parse_line("collect:  40%|####  | 8.0k/20.0k [00:02<00:03, 3.9kframe/s]", p) and p.total == 20000
    assert not parse_line("wm step 200: val_loss 0.4000, val_acc 0.9100", p)
    assert p.stage == "wm" and p.metrics["val_loss"] == 0.4 and p.metrics["val_acc"] == 0.91
    argv = command(TrainSpec("all", "tiny", data="d.npz", run_dir="runs/x", steps=50))
    assert argv[:4] == [sys.executable, "-u", "-m", "training.cli"] and "--vq-steps" in argv and "tiny" in argv
    assert "runs/x/atari_tokens_hires.npz" in command(TrainSpec("wm", run_dir="runs/x"))
    assert command(TrainSpec("collect", frames=500, data="o.npz"))[3:6] == ["neuroplay.cli", "collect", "--frames"]
    with pytest.raises(ValueError):
        command(TrainSpec("vqvae"))
    # jobs that would fail at once or destroy data are refused in one line, before starting

    (tmp_path / "rec.npz").write_bytes(b"a person's recordings")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    for spec, match in [(TrainSpec("collect", data="rec.npz"), "already exists"),
                        (TrainSpec("wm", run_dir="runs/r"), "tokenize"),
                        (TrainSpec("tokenize", data="rec.npz", run_dir="runs/r"), "vqvae")]:
        with pytest.raises(ValueError, match=match):
            TrainJob.from_spec(spec, cwd=tmp_path)
    assert (tmp_path / "rec.npz").read_bytes() == b"a person's recordings"


def test_trainjob_follows_and_cancels_a_process(tmp_path: Path) -> None:

    script = tmp_path / "fake_trainer.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        try:
            for i in range(1, 100000):
                sys.stderr.write(f"\\rwm:   1%|  | {i}/1000 [00:01<00:59, 9.0it/s, loss={1/i:.4f}]")
                sys.stderr.flush()
                if i % 5 == 0:
                    print(f"wm step {i}: val_loss {1/i:.4f}", flush=True)
                time.sleep(0.02)
        except KeyboardInterrupt:
            print("wm: interrupted at step 5; saved runs/x/last/wm", flush=True)
            sys.exit(130)
    """))
    job = TrainJob([sys.executable, str(script)], run_dir=tmp_path / "run").start()
    t0 = time.time()
    while job.progress.step < 6 and time.time() - t0 < 30:
        time.sleep(0.05)
    assert job.state == "running" and job.progress.total == 1000 and "val_loss" in job.progress.metrics
    assert job.cancel(timeout=20) == 130 and job.state == "cancelled"
    job.wait()
    assert any("interrupted" in line for line in job.lines()) and job.bar.startswith("wm:")
    assert job.checkpoint() is None
    for sub in ("vqvae", "wm"):
        (tmp_path / "run" / sub).mkdir(parents=True)
        (tmp_path / "run" / sub / "config.json").write_text("{}")
        (tmp_path / "run" / sub / "model.safetensors").write_bytes(b"")
    assert job.checkpoint() == tmp_path / "run"
    old = job.started_at - 60  # a world model from before this job is not offered as its result
    os.utime(tmp_path / "run" / "wm" / "model.safetensors", (old, old))
    assert job.checkpoint() is None


def test_a_chained_job_runs_in_order_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    step = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('ran\\n')"]
    fail = [sys.executable, "-c", "import sys; print('broken input'); sys.exit(2)"]
    job = TrainJob([step, step]).start()
    assert job.wait(60) == 0 and job.state == "done" and log.read_text() == "ran\nran\n"
    job = TrainJob([step, fail, step]).start()
    assert job.wait(60) == 2 and job.state == "failed" and log.read_text() == "ran\n" * 3
    assert "broken input" in job.lines()


def _screen(cwd: Path):  # noqa: ANN202
    from neuroplay.app.train_screen import TrainScreen

    return TrainScreen([], on_back=lambda: None, on_play=lambda p: None, device=lambda: "cpu", cwd=cwd)


def _until(job: TrainJob, done, timeout: float = 240.0) -> None:  # noqa: ANN001
    t0 = time.time()
    while not done() and job.state == "running" and time.time() - t0 < timeout:
        time.sleep(0.1)


def test_train_screen_first_start_on_a_fresh_install_collects_then_trains(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No data and no recordings: the first Start collects Breakout from ALE, then trains the shipped preset on
    it, as one job; cancelling stops the collection (it saves) and the training never starts."""
    monkeypatch.chdir(tmp_path)
    screen = _screen(tmp_path)
    assert (screen.spec.stage, screen.spec.preset, screen.spec.data) == ("all", SHIPPED_PRESET, "")
    assert "collect" in screen._data_label()
    screen.start()
    job = screen.job
    assert job is not None and screen.notice == "", screen.notice
    collect, train = job.argvs
    assert collect[3:5] == ["neuroplay.cli", "collect"]
    assert train[3:5] == ["training.cli", "all"] and train[train.index("--preset") + 1] == SHIPPED_PRESET
    assert train[train.index("--data") + 1] == collect[collect.index("--out") + 1]
    _until(job, lambda: job.progress.stage == "collect" and job.progress.step > 0)
    assert job.state == "running", job.lines()
    job.cancel(timeout=60)
    assert job.state == "cancelled" and job.proc is not None and job.proc.args == collect
    assert (tmp_path / collect[collect.index("--out") + 1]).is_file()  # what was collected is kept


def test_train_screen_trains_the_shipped_preset(breakout_file: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    screen = _screen(tmp_path)
    screen.spec.data = str(breakout_file)
    screen.start()
    job = screen.job
    assert job is not None and len(job.argvs) == 1, screen.notice
    _until(job, lambda: job.progress.stage == "vqvae" and job.progress.step >= 1)
    assert job.state == "running", job.lines()
    job.cancel(timeout=60)
    run = Path(job.argv[job.argv.index("--run-dir") + 1])
    state = json.loads((tmp_path / run / "last" / "vqvae" / "progress.json").read_text())
    assert state["step"] >= 1  # the cancelled stage saved where it was, to resume
    cfg = json.loads((tmp_path / run / "last" / "vqvae" / "config.json").read_text())
    assert cfg["preset"] == SHIPPED_PRESET


def test_train_screen_continues_the_shipped_pair_on_a_recording(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A player's recording: the screen offers to continue the shipped pair on it, and the job leaves a playable
    pair whose tokenizer is the shipped one, bit for bit, and whose world model started from the shipped one."""
    from neuroplay.checkpoint import load_pair, sha256_file
    from tests.conftest import play_episodes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "recordings").mkdir()
    rec = play_episodes(2, 40, seed=5)
    rec.sources = ["human", "human"]
    rec.save(tmp_path / "recordings" / "me.npz")
    screen = _screen(tmp_path)
    assert (screen.spec.stage, screen.spec.data) == ("continue", "recordings/me.npz")
    screen.spec.steps = 2
    screen.spec.extra = ["--eval-every", "2", "--no-progress-bar"]
    screen.start()
    job = screen.job
    assert job is not None, screen.notice
    assert job.wait(600) == 0, job.lines(40)
    run = job.checkpoint()
    assert run is not None
    _, _, info = load_pair(run)
    assert info["wm"]["preset"] == SHIPPED_PRESET and info["wm"]["step"] == 2
    weights = "vqvae/model.safetensors"
    assert sha256_file(run / weights) == sha256_file(SHIPPED_CHECKPOINT / weights)
    assert os.path.getsize(run / "atari_tokens_hires.npz") > 0
