"""Shared fixtures: real Breakout episodes made with ale-py, and a `tiny` model pair trained for seconds.

Both are session-scoped and cached under pytest's tmp dir, so the whole suite pays for them once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# Under pytest-xdist each worker gets one core; alone, use up to two.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


def play_episodes(n_episodes: int, max_steps: int, seed: int = 0, noise: float = 0.1):
    """Episodes of the tracker policy in the reference emulator (`RealEnv`), as an `Episodes`."""
    from neuroplay.data.episodes import Episodes
    from neuroplay.envs.players import TrackerPolicy
    from neuroplay.envs.real import RealEnv

    parts = []
    for e in range(n_episodes):
        env = RealEnv(seed=seed + e, max_steps=max_steps)
        pol = TrackerPolicy(noise=noise, seed=seed + e)
        frames, actions, rewards, dones = [env.reset()], [], [], []
        while True:
            a = pol.act(frames[-1])
            s = env.step(a)
            frames.append(s.frame)
            actions.append(a)
            rewards.append(s.reward)
            dones.append(s.done)
            if s.done:
                break
        parts.append(Episodes(
            frames=np.stack(frames), tokens=None, actions=np.asarray(actions, np.uint8),
            rewards=np.asarray(rewards, np.float32), dones=np.asarray(dones, bool),
            episode_lengths=np.asarray([len(actions)], np.int64), sources=["tracker"], meta={"seed": seed + e},
        ))
    return Episodes.concat(parts, meta={"game": "ALE/Breakout-v5", "test": True})


@pytest.fixture(scope="session")
def breakout_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 real episodes of up to 150 steps each (~900 transitions), saved in the dataset format."""
    path = tmp_path_factory.mktemp("data") / "breakout.npz"
    play_episodes(6, 150, seed=0).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, breakout_file: Path) -> Path:
    """A run folder with a `tiny` VQ-VAE (`vqvae/`), its token file and a `tiny` world model (`wm/`)."""
    from training.tokenize import TokenizeConfig, tokenize
    from training.vqvae import VQTrainConfig, train_vqvae
    from training.wm import WMTrainConfig, train_wm

    run = tmp_path_factory.mktemp("runs") / "tiny"
    common = dict(preset="tiny", run_dir=str(run), device="cpu", progress_bar=False)
    # Plain MSE: at `tiny` size the object-weighted loss needs ~3x the steps to reach the same PSNR, and this
    # fixture only needs a VQ that reconstructs; tests/test_objects.py trains the default loss end to end.
    train_vqvae(VQTrainConfig(data=[str(breakout_file)], steps=150, batch_size=16, val_frames=64, eval_every=50,
                              recon="mse", **common))
    tokenize(TokenizeConfig(data=[str(breakout_file)], run_dir=str(run), device="cpu"))
    train_wm(WMTrainConfig(data=[str(run / "atari_tokens_hires.npz")], steps=60, batch_size=8, seq_frames=8,
                           warmup=10, lr=3e-3, val_samples=64, eval_every=30, **common))
    return run


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory, breakout_file: Path) -> Path:
    """A run folder of the `tiny-local` preset, made by `train all`: a fitted patch codebook (`vqvae/`, 320 codes,
    so uint16 tokens), its token file and a world model trained for seconds (`wm/`)."""
    from training.cli import AllConfig, run_all

    run = tmp_path_factory.mktemp("runs") / "local"
    run_all(AllConfig(data=[str(breakout_file)], preset="tiny-local", run_dir=str(run), vq_steps=1, wm_steps=60,
                      device="cpu", progress_bar=False))
    return run
