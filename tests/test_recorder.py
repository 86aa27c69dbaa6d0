"""The recorder: episodes appended as they end, written behind the game, kept through a full disk or a
vanished folder, replayed bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.envs.real import RealEnv
from neuroplay.session import (
    Keys,
    Session,
)


def _record(tmp_path: Path, n_steps: int, max_steps: int = 30) -> Session:
    s = Session("record", None, seed=3, record_to=tmp_path / "rec.npz", max_steps=max_steps)
    rng = np.random.default_rng(0)
    for _ in range(n_steps):
        s.step(Keys(*(rng.random(3) < (0.3, 0.3, 0.1))))
    return s


def test_record_appends_episodes_and_replays_bit_exactly(tmp_path: Path) -> None:
    s = _record(tmp_path, 75)
    eps = Episodes.load(tmp_path / "rec.npz")
    assert eps.n_episodes == 2 and list(eps.episode_lengths) == [30, 30]  # written as each episode ended
    v = s.view()
    assert v.rec and v.hud["episodes"].startswith("2 saved, this one 15")
    assert s.close()  # the episode under way is kept too
    eps = Episodes.load(tmp_path / "rec.npz")
    assert eps.sources == ["human"] * 3 and list(eps.episode_lengths) == [30, 30, 15]
    assert list(eps.dones[eps.transition_offsets + eps.episode_lengths - 1]) == [True, True, False]
    assert eps.meta["episode_seeds"] == [3, 4, 5]
    for e in range(3):
        ep = eps.episode(e)
        seed = eps.meta["episode_seeds"][e]
        env = RealEnv(seed=seed, max_steps=30)
        frames = [env.reset(seed=seed)] + [env.step(int(a)).frame for a in ep.actions]
        assert np.array_equal(np.stack(frames), ep.frames), f"episode {e} does not replay bit for bit"

def test_record_close_before_any_step_writes_nothing(tmp_path: Path) -> None:
    s = Session("record", None, record_to=tmp_path / "rec.npz")
    assert s.close() and not (tmp_path / "rec.npz").exists()

def test_record_restart_mid_episode_keeps_it(tmp_path: Path) -> None:
    s = _record(tmp_path, 10)
    s.restart()
    s.step(Keys(fire=True))
    assert s.close()
    eps = Episodes.load(tmp_path / "rec.npz")
    assert list(eps.episode_lengths) == [10, 1] and eps.meta["episode_seeds"] == [3, 4]

def test_record_write_behind_does_not_stall_the_game(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the paced game a finished episode is written by a writer thread: play goes on meanwhile, the
    HUD counts it, and close() waits for every write."""
    import threading

    gate, real_save = threading.Event(), Episodes.save

    def slow_save(self, p):  # noqa: ANN001, ANN202 - a big file on a slow disk
        gate.wait(30)
        return real_save(self, p)

    monkeypatch.setattr(Episodes, "save", slow_save)
    path = tmp_path / "rec.npz"
    s = Session("record", None, seed=3, record_to=path, max_steps=30, write_behind=True)
    for _ in range(35):  # the first episode ends at step 30; its write waits at the gate
        s.step(Keys(right=True))
    assert s.steps == 35 and not path.exists() and s.recorder.episodes == 1
    gate.set()
    s.recorder.wait()
    assert Episodes.load(path).n_episodes == 1
    s.step(Keys())
    assert "episode 1 saved" in s.view().message
    for _ in range(30):
        s.step(Keys(left=True))
    assert s.close()
    eps = Episodes.load(path)
    assert list(eps.episode_lengths) == [30, 30, 6] and len(eps.meta["episode_seeds"]) == 3

def test_record_disk_full_keeps_earlier_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _record(tmp_path, 35)
    path = tmp_path / "rec.npz"
    before = path.read_bytes()
    real_save = Episodes.save

    def full(self, p):  # noqa: ANN001
        raise DatasetError(f"{p}: disk full while saving; the previous file (if any) is intact")

    monkeypatch.setattr(Episodes, "save", full)
    for _ in range(30):  # the second episode ends: its write fails
        s.step(Keys(right=True))
    v = s.view()
    assert "disk full" in v.message and v.message.startswith("NOT SAVED")
    assert path.read_bytes() == before and Episodes.load(path).n_episodes == 1
    assert s.recorder.unsaved  # still in memory
    monkeypatch.setattr(Episodes, "save", real_save)  # space freed: the next write catches up
    assert s.close()
    assert list(Episodes.load(path).episode_lengths) == [30, 30, 5]

def test_recorder_refuses_a_bad_folder_and_rescues_when_it_goes_away(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuroplay.recorder import Recorder

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="cannot create its folder"):  # before anything is played
        Recorder(tmp_path / "a_file" / "r.npz")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "recs"
    rec = Recorder(folder / "r.npz")
    frame = np.zeros((84, 64, 3), np.uint8)
    rec.start(frame)
    for _ in range(3):
        rec.add(2, frame, 0.0, False)
    folder.rmdir()
    folder.write_text("the folder became a file: nothing can be written there")
    assert not rec.close()
    rescued = list(tmp_path.glob("r.rescue-*.npz"))
    assert len(rescued) == 1 and Episodes.load(rescued[0]).n_transitions == 3
    assert str(rescued[0].name) in rec.message and not rec.unsaved
