"""The local patch tokenizer as a pair's tokenizer, end to end on real Breakout frames: `train all` fits it,
tokenizes to uint16 and trains a world model; the game, compare, replay, the eval and the bench take the pair as
they take a VQ-VAE one; and the dream's static tokens decode to exactly the pixels they stand for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.checkpoint import CheckpointError, load_pair, read_info
from neuroplay.cli import main
from neuroplay.data.episodes import Episodes
from neuroplay.envs.dream import DreamEnv
from neuroplay.models.patches import to_patches

COMMON = ["--headless", "--device", "cpu"]


def test_train_all_fits_the_codebook_and_writes_uint16_tokens(local_run: Path, breakout_file: Path) -> None:
    info = read_info(local_run / "vqvae")
    assert info["kind"] == "patches" and info["config"]["n_codes"] == 320
    assert info["metrics"]["val_exact_patches"] > 0.97  # the val split's patches, from codes fitted on the train split
    toks = Episodes.load(local_run / "atari_tokens_hires.npz")
    assert toks.tokens.dtype == np.uint16 and int(toks.tokens.max()) >= 256  # past uint8: the wide file is needed
    frames = Episodes.load(breakout_file).frames
    vq, wm, pair = load_pair(local_run)
    assert wm.cfg.n_vocab == vq.n_codes == 320 and pair["wm"]["vq_sha256"] == info["weights_sha256"]
    feats = vq.codebook.float() / vq.codebook.float().pow(2).mean().sqrt()  # each code's pixels, unit RMS
    assert torch.allclose(wm.code_feats, feats)  # fixed from the tokenizer, saved with the weights
    assert np.array_equal(vq.encode(torch.from_numpy(frames[:50])).flatten(1).numpy(), toks.tokens[:50].reshape(50, -1))
    # The eval's mirror path hands the tokenizer [-1, 1] float frames: the same codes come back.
    x = torch.from_numpy(frames[:8]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(vq.encode(x), vq.encode(torch.from_numpy(frames[:8])))


def test_the_dream_keeps_static_tokens_exact(local_run: Path, breakout_file: Path) -> None:
    env = DreamEnv.from_checkpoint(local_run, device="cpu")
    frames = Episodes.load(breakout_file).frames
    env.reset(frames[:4])
    assert env.tokens.dtype == np.uint16
    book = {row.tobytes() for row in env.engine.vq.codebook.numpy()}
    for a in (1, 2, 2, 3, 0, 1):
        step = env.step(a)
        assert step.frame.shape == (84, 64, 3) and step.frame.dtype == np.uint8
        # Every 4x4 patch on screen is one of the codebook's real patches: no blends, whatever the model says.
        assert all(p.tobytes() in book for p in to_patches(step.frame[None])[0])


@pytest.mark.parametrize("argv", [
    ["play", "--frames", "8", "--autopilot", "tracker"],
    ["compare", "--frames", "6", "--autopilot", "random"],
])
def test_game_modes_play_a_local_pair(argv: list[str], local_run: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--checkpoint", str(local_run), *COMMON, "--fps", "30", "--stats", "s.json"]) == 0
    assert json.loads(Path("s.json").read_text())["ticks"] == int(argv[2])


def test_eval_and_bench_take_a_local_pair(local_run: Path, breakout_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert main(["eval", "--data", str(breakout_file), "--checkpoint", str(local_run), "--split", "all",
                 "--tier", "canary", "--indices", str(tmp_path / "i.json"), "--limit", "32", "--rollout-samples", "4",
                 "--response-states", "2", "--fire-states", "2", "--ball-states", "2", "--gameplay-states", "2",
                 "--endless-steps", "20", "--device", "cpu", "--no-progress-bar", "--json", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert 0 <= m["val_acc"] <= 1 and "dream_ball_recall_h1" in m and "endless_ball_in_play" in m
    bench = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", str(local_run), "--items", "decode", "loop", "--steps", "5",
                 "--device", "cpu", "--json", str(bench)]) == 0
    t = json.loads(bench.read_text())["timings_ms"]
    assert t["decode"]["p50"] > 0 and "decode_bf16_cl" not in t and t["key_to_frame"]["p50"] > 0


def test_a_world_model_of_another_vocab_is_refused(local_run: Path, tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(local_run / "vqvae", tmp_path / "vqvae")
    shutil.copytree(tiny_run / "wm", tmp_path / "wm")
    with pytest.raises(CheckpointError, match="vocab 32 != tokenizer codebook 320"):
        load_pair(tmp_path)


def test_binary_motion_weighs_every_change_of_a_patch_code_as_an_event(local_run: Path) -> None:
    from neuroplay.checkpoint import load_tokenizer
    from training.importance import importance_weights, motion_distances

    vq = load_tokenizer(local_run / "vqvae")[0]
    t = torch.from_numpy(Episodes.load(local_run / "atari_tokens_hires.npz").tokens[:200].astype(np.int64))
    t = t.flatten(1)  # (200, 336)
    hist = torch.stack([t[i : i + 4] for i in range(len(t) - 4)])  # (196, 4, 336)
    target = t[4:]  # (196, 336)
    changed = target != hist[:, -1]
    assert changed.any(1).float().mean() > 0.5  # real play: most steps change some token
    by_pixels = importance_weights(hist, target, motion_distances(vq.code_vectors(), vq.n_codes, "codebook"))
    binary = importance_weights(hist, target, motion_distances(vq.code_vectors(), vq.n_codes, "binary"))
    assert (binary[changed] >= 3).all() and by_pixels[changed].median() < 2  # the ball's small patches weigh little
    still = ~changed & (hist == hist[:, -1:]).all(1)  # (196, 336): no change in the history nor the target
    assert still.any() and (binary[still] == 1).all()  # ... keeps weight 1
