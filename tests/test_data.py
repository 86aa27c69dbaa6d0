"""The dataset format, the collector and the sample windows, on real ALE Breakout frames."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.cli import main as cli
from neuroplay.data.collect import CollectConfig, collect, make_vector_env
from neuroplay.data.datasets import split_episodes
from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.real import RealEnv


def replay(eps: Episodes, e: int) -> list[np.ndarray]:
    """Replay episode e's stored actions in a fresh reference emulator; its frames."""
    ep = eps.episode(e)
    env = RealEnv(seed=0)
    frames = [env.reset()]
    frames += [env.step(int(a)).frame for a in ep.actions]
    return frames


def test_vector_env_matches_reference_preprocessing() -> None:
    """AtariVectorEnv (C++ max-pool + INTER_AREA) == RealEnv (numpy max + cv2.INTER_AREA), pixel for pixel."""
    env = make_vector_env(2, max_steps=1000)
    obs, _ = env.reset(seed=0)
    refs = [RealEnv(seed=0), RealEnv(seed=1)]
    for i, r in enumerate(refs):
        assert np.array_equal(obs[i, 0], r.reset())
    rng = np.random.default_rng(0)
    for _ in range(120):
        a = rng.integers(0, 4, size=2)
        obs, _, term, trunc, _ = env.step(a)
        for i, r in enumerate(refs):
            s = r.step(int(a[i]))
            assert s.done == bool(term[i] or trunc[i])
            assert np.array_equal(obs[i, 0], s.frame)
    env.close()


def test_collected_episodes_replay_bit_for_bit(tmp_path: Path) -> None:
    out = tmp_path / "c.npz"
    eps = collect(CollectConfig(out=str(out), frames=400, envs=3, policy="mix", max_steps=90, seed=3,
                                progress_bar=False))
    loaded = Episodes.load(out)
    assert loaded.n_transitions == eps.n_transitions >= 400
    assert loaded.meta["preprocessing"]["frameskip"] == 4
    for e in range(loaded.n_episodes):
        ep = loaded.episode(e)
        frames = replay(loaded, e)
        assert len(ep.actions) <= 89  # time-limit cuts drop their last frame
        for t in range(len(frames)):
            assert np.array_equal(frames[t], ep.frames[t]), f"episode {e} frame {t} differs"
    # no frame of one episode is glued to the next: every episode starts at the reset screen
    first = RealEnv().reset()
    assert all(np.array_equal(loaded.episode(e).frames[0], first) for e in range(loaded.n_episodes))
    # an existing file (it may be a person's recordings) is never replaced unless asked
    before = out.read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        collect(CollectConfig(out=str(out), frames=10, envs=1, progress_bar=False))
    assert out.read_bytes() == before


def test_interrupted_collection_keeps_finished_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuroplay.envs import players

    calls = {"n": 0}
    orig = players.RandomPolicy.act

    def act(self, frame=None):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > 700:
            raise KeyboardInterrupt
        return orig(self, frame)

    monkeypatch.setattr(players.RandomPolicy, "act", act)
    out = tmp_path / "int.npz"
    with pytest.raises(KeyboardInterrupt):
        collect(CollectConfig(out=str(out), episodes=50, envs=2, policy="random", max_steps=100, chunk_frames=150,
                              progress_bar=False))
    eps = Episodes.load(out)
    assert eps.n_transitions >= 600  # finished episodes and the two under way
    assert not list(tmp_path.glob("*.part-*"))  # parts were merged and removed


def small_episodes(n: int = 3, length: int = 10) -> Episodes:
    rng = np.random.default_rng(0)
    lens = np.full(n, length, np.int64)
    return Episodes(
        frames=rng.integers(0, 255, (n * (length + 1), 84, 64, 3), dtype=np.uint8), tokens=None,
        actions=rng.integers(0, 4, n * length).astype(np.uint8), rewards=np.zeros(n * length, np.float32),
        dones=np.zeros(n * length, bool), episode_lengths=lens, sources=["random"] * n, meta={"x": 1},
    )


def test_save_load_round_trip_and_mmap(tmp_path: Path) -> None:
    eps = small_episodes()
    path = eps.save(tmp_path / "a.npz")
    for mmap in (False, True):
        back = Episodes.load(path, mmap=mmap)
        assert np.array_equal(back.frames, eps.frames) and back.sources == eps.sources
        assert back.meta["x"] == 1 and back.meta["format_version"] == 1
    assert isinstance(Episodes.load(path, mmap=True).frames, np.memmap)
    assert not list(tmp_path.glob(".*tmp*"))


def corrupt_variants(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = small_episodes().save(tmp_path / "good.npz")
    raw = good.read_bytes()
    out: dict[str, tuple[Path, str]] = {}

    def write(name: str, data: bytes) -> Path:
        p = tmp_path / name
        p.write_bytes(data)
        return p

    out["truncated"] = (write("trunc.npz", raw[: len(raw) // 2]), "corrupt or truncated")
    out["garbage"] = (write("garbage.npz", b"hello world" * 100), "corrupt or truncated")
    eps = small_episodes()

    def arrays(**over: object) -> dict[str, object]:
        base = {"frames": eps.frames, "actions": eps.actions, "rewards": eps.rewards, "dones": eps.dones,
                "episode_lengths": eps.episode_lengths, "sources": np.asarray(eps.sources),
                "meta": np.asarray(json.dumps({}))}
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def npz(name: str, **over: object) -> Path:
        p = tmp_path / name
        np.savez(p, **arrays(**over))
        return p

    out["missing"] = (npz("missing.npz", dones=None), "missing array 'dones'")
    out["dtype"] = (npz("dtype.npz", actions=eps.actions.astype(np.int32)), "'actions' must be 1-D uint8")
    out["lengths"] = (npz("lengths.npz", episode_lengths=eps.episode_lengths + 1), "episode_lengths add up")
    bad_actions = eps.actions.copy()
    bad_actions[5] = 7
    out["action"] = (npz("action.npz", actions=bad_actions), "action 7 at index 5")
    out["pickle"] = (npz("pickle.npz", sources=np.array([{"a": 1}] * 3, dtype=object)), "pickles are refused")
    return out


def test_bad_files_give_one_clear_line(tmp_path: Path) -> None:
    for name, (path, expected) in corrupt_variants(tmp_path).items():
        with pytest.raises(DatasetError) as err:
            Episodes.load(path)
        msg = str(err.value)
        assert str(path) in msg and expected in msg and "\n" not in msg, (name, msg)
    with pytest.raises(DatasetError, match="no such file"):
        Episodes.load(tmp_path / "nope.npz")


def test_cli_reports_bad_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = corrupt_variants(tmp_path)["truncated"]
    assert cli(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuroplay: error:") and str(path) in err[0]


def test_save_is_atomic_on_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    path = small_episodes(2).save(tmp_path / "keep.npz")
    before = path.read_bytes()

    def full(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DatasetError, match="disk full"):
        small_episodes(3).save(path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def token_episodes(n: int = 3, length: int = 10) -> Episodes:
    """Random token episodes (every frame distinct, so a window's rows can be read back from its tokens)."""
    rng = np.random.default_rng(0)
    return Episodes(
        frames=None, tokens=rng.integers(0, 32, (n * (length + 1), 21, 16), dtype=np.uint8),
        actions=rng.integers(0, 4, n * length).astype(np.uint8), rewards=np.zeros(n * length, np.float32),
        dones=np.zeros(n * length, bool), episode_lengths=np.full(n, length, np.int64), sources=["random"] * n,
        meta={},
    )


def _rows_of(eps: Episodes, tokens: torch.Tensor) -> np.ndarray:
    """The file rows (...) whose frames are `tokens` (..., 336)."""
    where = {np.asarray(t).tobytes(): i for i, t in enumerate(np.asarray(eps.tokens).reshape(len(eps.tokens), -1))}
    flat = tokens.numpy().astype(np.uint8).reshape(-1, tokens.shape[-1])
    return np.array([where[t.tobytes()] for t in flat]).reshape(tokens.shape[:-1])


def test_split_is_by_episode_without_leakage() -> None:
    from training.wm_data import TokenSampler

    train, val = split_episodes(50, 0.1, seed=0)
    assert len(val) == 5 and len(train) == 45 and not set(train) & set(val)
    assert np.array_equal(split_episodes(50, 0.1, seed=0)[1], val)
    assert not np.array_equal(split_episodes(50, 0.1, seed=1)[1], val)
    eps = token_episodes(10, 12)
    s = TokenSampler(eps, 0.2, 0, 1.0)
    assert np.array_equal(s.val_e, split_episodes(10, 0.2, seed=0)[1])
    episode_of = np.repeat(np.arange(10), 13)  # file row -> episode (13 frames each)
    g = torch.Generator().manual_seed(0)
    for split, want in (("train", s.train_e), ("val", s.val_e)):
        b = s.rollout_batch(200, 1, g, split)
        assert set(episode_of[_rows_of(eps, b["targets"][:, 0])]) == set(want)
    clips = s.sequence_batch(50, 6, g)["frames"]
    assert set(episode_of[_rows_of(eps, clips).reshape(-1)]) <= set(s.train_e)


def test_windows_stay_inside_episodes_and_pad_the_start() -> None:
    """The training sampler's K-step windows: targets and actions in step, never across an episode's end, the
    history before an episode's start padded with its first frame (and NOOP as the padding's action)."""
    from training.wm_data import TokenSampler

    eps = token_episodes(3, 10)
    s = TokenSampler(eps, 0.0, 0, 1.0)
    b = s.rollout_batch(300, 5, torch.Generator().manual_seed(1))
    tgt, hist = _rows_of(eps, b["targets"]), _rows_of(eps, b["history"])  # (B, 5), (B, 4) file rows
    first = (tgt[:, 0] - 1) // 11 * 11  # each episode: 11 frames, 10 transitions
    t = tgt[:, 0] - 1 - first  # the window's start frame within its episode
    assert set(t) == set(range(6)) and (t + 5 <= 10).all()  # every start, none running past the end
    assert (tgt == tgt[:, :1] + np.arange(5)).all()
    trans = first // 11 * 10 + t
    assert np.array_equal(b["actions"].numpy(), eps.actions[trans[:, None] + np.arange(5)])
    assert np.array_equal(hist, np.maximum(first[:, None], tgt[:, :1] - 4 + np.arange(4)))
    pad = hist[:, :-1] == hist[:, 1:]  # a padding copy of the first frame: its action is NOOP
    assert pad.any() and (b["history_actions"].numpy()[pad] == 0).all()


def test_data_cli_info_and_merge(tmp_path: Path, breakout_file: Path, capsys: pytest.CaptureFixture) -> None:
    other = small_episodes(2).save(tmp_path / "b.npz")
    assert cli(["data", "info", str(breakout_file)]) == 0
    assert "6 episodes" in capsys.readouterr().out
    out = tmp_path / "m.npz"
    assert cli(["data", "merge", str(breakout_file), str(other), "--out", str(out)]) == 0
    merged = Episodes.load(out)
    assert merged.n_episodes == 8 and merged.sources[-1] == "random"
    assert cli(["data", "merge", str(out), "--out", str(out)]) == 2
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
