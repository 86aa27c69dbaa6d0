"""`neuroplay bench` runs end to end and writes what the performance tables are built from.

No timing assertions: the speed goals (lite p95 < 50 ms, 15 FPS) depend on the machine and its load and
are checked by running the benchmark (`benchmarks/run_benchmarks.py`), not by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroplay.cli import main

FAST = ["--steps", "3", "--warmup", "1"]


def read(path: Path) -> dict:
    assert path.is_file()
    return json.loads(path.read_text())


def check_stats(s: dict) -> None:
    assert set(s) >= {"p50", "p90", "p95", "p99", "mean", "n"}
    assert 0 <= s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]


def test_bench_preset_writes_the_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench" / "tiny.json"
    rc = main(["bench", "--preset", "tiny", *FAST, "--items", "wm", "decode", "loop", "train", "--train-steps", "1",
               "--paced-frames", "3", "--fps", "1000", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| wm_query |" in printed and "play_loop" in printed and str(out) in printed
    r = read(out)
    assert r["model"]["preset"] == "tiny" and r["model"]["source"] == "random-init"
    assert r["model"]["context_frames"] == 6  # 2 block-causal layers, 3 frames back each
    assert r["model"]["dtype"] in ("bfloat16", "float32")
    m = r["machine"]
    assert m["cores"] >= 1 and m["torch"] and m["device"] == "cpu" and isinstance(m["cpu"], str)
    for k in ("wm_full", "wm_frame_pass", "wm_query", "decode_fp32", "decode_bf16_cl", "prepare", "model",
              "decode", "key_to_frame", "play_loop"):
        check_stats(r["timings_ms"][k])
        assert r["timings_ms"][k]["n"] == 3
    assert r["fps_ceiling"] > 0 and r["peak_rss_mb"] >= r["peak_rss_play_mb"] > 10
    assert r["paced"]["frames"] == 3 and 0 <= r["paced"]["dropped"] <= 3 and r["paced"]["fps_sustained"] > 0
    train = r["throughput"]["train"]
    assert train["samples_per_s"] > 0 and train["targets_per_step"] == train["batch_size"] * (train["seq_frames"] - 1)
    assert {"decode_fp32_over_bf16_cl", "wm_full_over_query"} <= set(r["ratios"])
    assert r["config"]["steps"] == 3


def test_bench_train_batch_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep.json"
    rc = main(["bench", "--preset", "tiny", *FAST, "--items", "train", "--train-steps", "1", "--train-batch", "2", "6",
               "--json", str(out)])
    assert rc == 0
    sweep = read(out)["throughput"]["train_sweep"]
    assert [t["batch_size"] for t in sweep] == [2, 6]
    assert [t["targets_per_step"] for t in sweep] == [2 * 7, 6 * 7]  # tiny trains clips of 8 frames
    assert read(out)["throughput"]["train"] == sweep[0]
    assert "training, batch 6:" in capsys.readouterr().out
    assert main(["bench", "--preset", "tiny", *FAST, "--items", "train", "--train-batch", "0"]) == 2
    assert "--train-batch" in capsys.readouterr().err


def test_bench_checkpoint_full_attention_and_matrix(tmp_path: Path, tiny_run: Path) -> None:
    """A trained run folder; and the matrix with a full-attention preset (no cache: its frame pass only rolls the
    window, and the step's whole work comes after the key)."""
    out = tmp_path / "ckpt.json"
    assert main(["bench", "--checkpoint", str(tiny_run), "--device", "cpu", "--dtype", "fp32", *FAST,
                 "--items", "wm", "loop", "--matrix", "--matrix-with", "tiny-full", "--json", str(out)]) == 0
    r = read(out)
    assert r["model"]["source"] == str(tiny_run) and r["model"]["preset"] == "tiny"
    assert r["model"]["dtype"] == "float32"
    assert set(r["matrix"]) == {"self_fp32", "self_bf16", "tiny-full_fp32", "tiny-full_bf16"}
    check_stats(r["matrix"]["tiny-full_bf16"]["wm_full"])
    assert "wm_query_fp32_over_bf16" in r["ratios"] and "tiny-full_full_bf16_over_self_step_bf16" in r["ratios"]

    full = tmp_path / "full.json"
    assert main(["bench", "--preset", "tiny-full", *FAST, "--items", "wm", "loop", "--json", str(full)]) == 0
    r = read(full)
    t = r["timings_ms"]
    assert r["model"]["context_frames"] == 3 and t["wm_query"]["p50"] > 10 * t["wm_frame_pass"]["p50"]


def test_bench_collect_throughput(tmp_path: Path) -> None:
    out = tmp_path / "collect.json"
    assert main(["bench", "--preset", "tiny", "--items", "collect", "--collect-frames", "32", "--json", str(out)]) == 0
    c = read(out)["throughput"]["collect"]
    assert c["frames"] >= 32 and c["frames_per_s"] > 0


def test_bench_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["bench", "--preset", "tiny", "--items", "wm", "gpu-magic"]) == 2
    assert "--items" in capsys.readouterr().err
    assert main(["bench", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
