"""Evaluation suite: metrics on hand-made cases whose answers are known, frozen indices, the CLI and report.

A toy Breakout ("FakeGame") and a lossless toy VQ make exact answers possible: each token is a uniform 4x4
patch (or the red 2x2 ball on black), so decoding then flipping equals flipping the token grid, a perfect
model scores 1.0 / capped PSNR, and the copy-last model scores its baseline exactly. The red colour and
rows match `envs.breakout.detect`, so the probes run on it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuroplay.data.episodes import DatasetError, Episodes
from neuroplay.evaluation.frames import EvalData
from neuroplay.evaluation.indices import TIER_SIZES, all_samples, load_or_create, pick_tiers
from neuroplay.evaluation.metrics import evaluate
from neuroplay.evaluation.probes import ball_alive, run_probes
from neuroplay.evaluation.suite import frozen_samples
from neuroplay.models.interface import DreamModel, WorldModelOutput
from neuroplay.psnr import PSNR_CAP, psnr_from_mse

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3
BG, PADDLE, BALL = 3, 1, 2
PADDLE_ROW, ROWS, COLS = 19, (10, 18), (1, 14)


class FakeVQ(nn.Module):
    """Lossless on frames made of its 32 patches: 0 black, 1 red, 2 red 2x2 ball on black, 3.. grey levels."""

    def __init__(self) -> None:
        super().__init__()
        pal = np.zeros((32, 4, 4, 3), np.float32)
        pal[1] = (200, 72, 72)
        pal[2, 1:3, 1:3] = (200, 72, 72)
        for k in range(3, 32):
            pal[k] = 8 * k
        self.register_buffer("palette", torch.from_numpy(pal))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() if frames.dtype == torch.uint8 else (frames.permute(0, 2, 3, 1) + 1) * 127.5
        p = x.reshape(-1, 21, 4, 16, 4, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, 21, 16, 48)
        return torch.cdist(p.reshape(-1, 48), self.palette.reshape(32, 48)).argmin(-1).view(-1, 21, 16)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.palette[tokens.long().reshape(-1, 21, 16)]  # (B, 21, 16, 4, 4, 3)
        img = p.permute(0, 1, 3, 2, 4, 5).reshape(-1, 84, 64, 3)
        return img.permute(0, 3, 1, 2) / 127.5 - 1


def game_step(paddle: int, ball: tuple | None, action: int) -> tuple[int, tuple | None]:
    """Paddle centre moves one token per RIGHT/LEFT; FIRE spawns the ball above it; the ball bounces.

    Everything is mirror-symmetric (columns c <-> 15 - c with LEFT <-> RIGHT), so the exact model is too.
    """
    paddle = min(paddle + 1, 13) if action == RIGHT else max(paddle - 1, 2) if action == LEFT else paddle
    if ball is None:
        return paddle, ((ROWS[1], paddle, -1, spawn_dc(paddle)) if action == FIRE else None)
    r, c, dr, dc = ball
    dr = -dr if not ROWS[0] <= r + dr <= ROWS[1] else dr
    dc = -dc if not COLS[0] <= c + dc <= COLS[1] else dc
    return paddle, (r + dr, c + dc, dr, dc)


def spawn_dc(col: int) -> int:
    """A new ball heads for the centre (mirror-symmetric)."""
    return 1 if col < 7.5 else -1


def render(paddle: int, ball: tuple | None) -> np.ndarray:
    g = np.full((21, 16), BG, np.int64)
    g[PADDLE_ROW, paddle - 1 : paddle + 2] = PADDLE
    if ball is not None:
        g[ball[0], ball[1]] = BALL
    return g


def parse(grid: torch.Tensor) -> tuple[int, tuple[int, int] | None]:
    g = grid.view(21, 16)
    cols = (g[PADDLE_ROW] == PADDLE).nonzero()[:, 0]
    b = (g == BALL).nonzero()
    return int(cols.float().mean().round()), (None if len(b) == 0 else (int(b[0, 0]), int(b[0, 1])))


class GameModel(DreamModel):
    """The toy game's exact dynamics (`broken`: LEFT does nothing, which breaks mirror symmetry)."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken

    def forward(self, history: torch.Tensor, action: torch.Tensor) -> WorldModelOutput:
        out = []
        for h, a in zip(history, action.tolist()):
            (p, b), (_, b0) = parse(h[-1]), parse(h[-2])
            ball = None if b is None else (*b, *((b[0] - b0[0], b[1] - b0[1]) if b0 else (-1, spawn_dc(b[1]))))
            a = NOOP if self.broken and a == LEFT else a
            out.append(torch.from_numpy(render(*game_step(p, ball, a))).view(-1))
        return WorldModelOutput(nn.functional.one_hot(torch.stack(out), 32).float() * 10)


class CopyModel(DreamModel):
    """Predicts the last history frame, whatever the action."""

    def forward(self, history: torch.Tensor, action: torch.Tensor) -> WorldModelOutput:
        return WorldModelOutput(nn.functional.one_hot(history[:, -1], 32).float() * 10)


class NoiseModel(DreamModel):
    """Random tokens: red patches everywhere, which a naive paddle/ball read would take for objects."""

    def forward(self, history: torch.Tensor, action: torch.Tensor) -> WorldModelOutput:
        g = torch.Generator().manual_seed(int(action.sum()) + int(history[:, -1].sum()))
        return WorldModelOutput(torch.randn(len(action), 336, 32, generator=g))


def fake_episodes(n_episodes: int = 4, length: int = 32, seed: int = 0) -> Episodes:
    """Random play of the toy game as a pixel file: no FIRE in the first 4..8 steps, so no-ball states exist."""
    rng, vq = np.random.default_rng(seed), FakeVQ()
    grids, actions, lens = [], [], []
    for _ in range(n_episodes):
        paddle, ball, quiet = int(rng.integers(2, 14)), None, int(rng.integers(4, 9))
        grids.append(render(paddle, ball))
        for t in range(length):
            a = int(rng.choice([NOOP, RIGHT, LEFT])) if t < quiet else int(rng.integers(4))
            paddle, ball = game_step(paddle, ball, a)
            grids.append(render(paddle, ball))
            actions.append(a)
        lens.append(length)
    frames = ((vq.decode(torch.from_numpy(np.stack(grids))) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    n = len(actions)
    return Episodes(frames=frames.numpy(), tokens=None, actions=np.array(actions, np.uint8),
                    rewards=np.zeros(n, np.float32), dones=np.zeros(n, bool), episode_lengths=np.array(lens, np.int64),
                    sources=["fake"] * n_episodes, meta={"game": "fake"})


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are small: on a busy 2-core machine thread hand-offs cost 10x the work itself."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fake() -> tuple[FakeVQ, EvalData, np.ndarray]:
    eps = fake_episodes()
    return FakeVQ(), EvalData(eps), all_samples(eps.episode_lengths, np.arange(eps.n_episodes))


def test_psnr_definition() -> None:
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(1.0) == pytest.approx(0.0)
    assert psnr_from_mse(0.0) == PSNR_CAP
    a, b = np.zeros((2, 8, 8)), np.zeros((2, 8, 8))
    b[0, :4] = 0.5  # aggregate over samples and pixels: mse = 0.25 * 32 / 128
    assert psnr_from_mse(float(((a - b) ** 2).mean())) == pytest.approx(10 * np.log10(1 / (0.25 * 32 / 128)))


def test_fake_vq_is_lossless_and_mirror_exact(fake) -> None:
    vq, data, _ = fake
    frames = torch.from_numpy(data.images(np.arange(50)))
    tok = vq.encode(frames)
    assert torch.equal(((vq.decode(tok) + 1) * 127.5).round().byte().permute(0, 2, 3, 1), frames)
    assert torch.equal(vq.encode(vq.decode(tok).flip(-1)), tok.flip(-1))


def test_perfect_model_scores_one_and_capped_psnr(fake) -> None:
    vq, data, s = fake
    m = evaluate(vq, GameModel(), data, s, horizon=5, batch_size=64)
    for k in ("val_acc", "changed_token_acc", "rollout_acc_h5", "rollout_changed_acc_h5", "mirror_consistency"):
        assert m[k] == 1.0, k
    assert m["rollout_psnr_h1"] == m["rollout_psnr_h5"] == m["vq_recon_psnr"] == PSNR_CAP
    assert m["copy_last_acc"] < 1.0 and m["copy_last_psnr_h1"] < 40
    assert m["action_sensitivity"] > 0.05 and m["action_paddle_dx"] > 4.0  # RIGHT - LEFT: up to 2 tokens = 8 px


def test_copy_model_scores_exactly_copy_last(fake) -> None:
    vq, data, s = fake
    m = evaluate(vq, CopyModel(), data, s, horizon=10, batch_size=50)
    for h in (1, 5, 10):
        assert m[f"rollout_psnr_h{h}"] == pytest.approx(m[f"copy_last_psnr_h{h}"], rel=1e-6)
    assert m["val_acc"] == pytest.approx(m["copy_last_acc"])
    assert m["rollout_acc_h10"] == pytest.approx(m["copy_last_acc_h10"])
    assert m["changed_token_acc"] == 0.0 and m["action_sensitivity"] == 0.0 and m["action_paddle_dx"] == 0.0
    assert m["mirror_consistency"] == 1.0  # copying ignores actions: symmetric by construction
    # copy-last PSNR by hand: real frame t+1 vs real frame t over every sample
    r = data.rows(s)
    diff = (data.images(r + 1).astype(np.float64) - data.images(r)) / 255
    assert m["copy_last_psnr_h1"] == pytest.approx(10 * np.log10(1 / (diff**2).mean()))
    assert m["per_horizon"]["n_tokens"][0] == len(s) * 336


def test_token_file_gives_the_same_figures(fake) -> None:
    vq, data, s = fake
    eps = data.parts[0]
    tok = eps.replace(frames=None, tokens=vq.encode(torch.from_numpy(eps.frames)).byte().numpy())
    a = evaluate(vq, CopyModel(), data, s[:60], horizon=3)
    b = evaluate(vq, CopyModel(), EvalData(tok), s[:60], horizon=3)
    assert b["psnr_reference"] == "vq_decoded_tokens" and b["vq_recon_psnr"] is None
    for k in ("val_acc", "rollout_psnr_h1", "copy_last_psnr_h1", "mirror_consistency"):
        assert a[k] == pytest.approx(b[k]), k
    c = evaluate(None, CopyModel(), EvalData(tok), s[:60], horizon=3)  # no VQ: token figures only
    assert c["val_acc"] == pytest.approx(a["val_acc"]) and c["rollout_psnr_h1"] is None


def test_mirror_and_sensitivity_invariants(fake) -> None:
    vq, data, s = fake
    broken = evaluate(vq, GameModel(broken=True), data, s, horizon=1)
    assert broken["mirror_consistency"] < 1.0
    assert 0 < broken["action_paddle_dx"] < 4.5  # RIGHT moves, LEFT does not


def test_probes_on_the_perfect_and_copy_models(fake) -> None:
    vq, data, s = fake
    kw = dict(response_states=20, fire_states=5, ball_states=10, ball_steps=12)
    p = run_probes(vq, GameModel(), data, s, **kw)
    assert p["action_response_rate"] == 1.0 and p["action_response_states"] == 20
    assert p["fire_states"] == 5 and p["fire_launch_rate"] == 1.0 and p["noop_launch_rate"] == 0.0
    assert p["fire_delay_n"] == 5 and sum(p["fire_delay_hist"]) == 5 and len(p["fire_delay_hist"]) == 8
    assert p["fire_delay_at_once"] == p["fire_delay_hist"][0] / 5  # the serve delay: step of the first ball
    assert p["ball_states"] == 10 and p["ball_alive_rate"] == 1.0
    c = run_probes(vq, CopyModel(), data, s, **kw)
    assert c["action_response_rate"] == 0.0 and c["fire_launch_rate"] == 0.0 and c["fire_delay_n"] == 0
    assert c["ball_alive_rate"] == 0.0  # a frozen ball is not moving
    n = run_probes(vq, NoiseModel(), data, s, **kw)
    assert n["action_response_rate"] == n["fire_launch_rate"] == n["ball_alive_rate"] == 0.0
    assert evaluate(vq, NoiseModel(), data, s[:20], horizon=1)["action_paddle_dx"] is None


def test_ball_alive_rule() -> None:
    from neuroplay.envs.breakout import Objects

    moving = [Objects(30.0, 10.0 + i, 50.0, 4) for i in range(10)]
    assert ball_alive(moving)
    assert not ball_alive([Objects(30.0, 10.0, 50.0, 4)] * 10)  # visible but frozen
    assert not ball_alive(moving[:5] + [Objects(30.0, None, None, 0)] * 5)  # lost at the end


def test_fastval_is_balanced_over_actions() -> None:
    rng = np.random.default_rng(0)
    samples = np.stack([np.zeros(20000, np.int64), np.arange(20000)], 1)
    acts = rng.choice(4, 20000, p=[0.55, 0.05, 0.2, 0.2])
    tiers = pick_tiers(samples, acts, seed=0)
    assert len(tiers["canary"]) == TIER_SIZES["canary"] and len(tiers["gold"]) == 20000
    counts = np.bincount(acts[tiers["fastval"][:, 1]], minlength=4)
    assert len(tiers["fastval"]) == 6000 and counts[1] == (acts == FIRE).sum()  # FIRE is short: all of it
    assert np.ptp(counts[[NOOP, RIGHT, LEFT]]) <= 1  # the others share the rest evenly


def test_indices_are_frozen_and_refuse_other_data(tmp_path: Path, breakout_file: Path, tiny_run: Path) -> None:
    eps = Episodes.load(breakout_file)
    data = EvalData(eps)
    path = tmp_path / "idx.json"
    args = ([str(breakout_file)], data.metas, data.episode_lengths, data.actions_at, "val")
    idx, written = load_or_create(path, *args)
    first = path.read_bytes()
    assert written and (idx.samples("val", "canary")[:, 1] >= 3).all()
    idx2, written2 = load_or_create(path, *args)
    assert not written2 and path.read_bytes() == first
    assert np.array_equal(idx.samples("val", "gold"), idx2.samples("val", "gold"))
    val_eps = set(idx.splits["val"]["episodes"])
    assert set(idx.samples("val", "gold")[:, 0]) == val_eps
    assert np.array_equal(frozen_samples([str(breakout_file)], "gold", indices=path)[1], idx.samples("val", "gold"))
    # the token file encoded from this pixel file shares its indices
    tok = EvalData(Episodes.load(tiny_run / "atari_tokens_hires.npz"))
    load_or_create(path, [str(tiny_run / "atari_tokens_hires.npz")], tok.metas, tok.episode_lengths,
                   tok.actions_at, "val")
    other = tmp_path / "other.npz"
    eps.replace(actions=(eps.actions + 1) % 4).save(other)
    o = EvalData(Episodes.load(other))
    with pytest.raises(DatasetError, match="frozen for"):
        load_or_create(path, [str(other)], o.metas, o.episode_lengths, o.actions_at, "val")


def test_kv_cache_rollout_matches_plain_forward(tiny_run: Path, breakout_file: Path) -> None:
    from neuroplay.checkpoint import load_pair

    vq, wm, _ = load_pair(tiny_run)
    data = EvalData(Episodes.load(breakout_file, mmap=True))
    s = all_samples(data.episode_lengths, np.array([0]))[::40][:3]
    a = evaluate(vq, wm, data, s, horizon=3, use_cache=True)
    b = evaluate(vq, wm, data, s, horizon=3, use_cache=False)
    for k in ("val_acc", "rollout_psnr_h1", "val_loss", "action_sensitivity"):
        assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-3), k


def test_eval_cli_writes_json_and_report(tmp_path: Path, breakout_file: Path, tiny_run: Path, capsys) -> None:
    from neuroplay.cli import main

    out, rep, idx = tmp_path / "eval.json", tmp_path / "report", tmp_path / "idx.json"
    small = ["--limit", "12", "--horizon", "3", "--rollout-samples", "4", "--response-states", "2",
             "--fire-states", "1", "--ball-states", "1", "--examples", "1", "--device", "cpu", "--no-progress-bar",
             "--gameplay-states", "2", "--endless-steps", "20"]
    rc = main(["eval", "--data", str(breakout_file), "--checkpoint", str(tiny_run), "--indices", str(idx),
               "--json", str(out), "--report", str(rep), *small])
    assert rc == 0
    r = json.loads(out.read_text())
    m = r["metrics"]
    assert m["n_samples"] == 12 and m["n_samples_rollout"] == 4
    for k in ("val_acc", "changed_token_acc", "rollout_psnr_h1", "copy_last_psnr_h1", "vq_recon_psnr",
              "mirror_consistency", "action_sensitivity", "action_response_rate", "reset_launch_rate",
              "reset_launch_real_rate", "endless_paddle_visible", "endless_real_paddle_visible", "decode"):
        assert k in m
    assert m["reset_launch_real_rate"] == 1.0 and m["endless_real_paddle_visible"] == 1.0
    assert m["decode"] == "argmax" and m["play_psnr_h1"] is None  # no second rollout when play decodes by argmax
    assert r["checkpoint"]["wm_sha256"] and r["data"][0]["sha256"]
    for f in ("report.md", "accuracy.png", "psnr.png", "rollouts.png", "rollouts.gif"):
        assert (rep / f).stat().st_size > 0, f
    assert "copy-last" in (rep / "report.md").read_text() and "token accuracy" in capsys.readouterr().out
    tokens = tiny_run / "atari_tokens_hires.npz"  # its token file shares the frozen indices
    rc = main(["eval", "--data", str(tokens), "--checkpoint", str(tiny_run), "--indices", str(idx), "--json", str(out),
               *small[:2], "--horizon", "1", "--response-states", "0", "--fire-states", "0", "--ball-states", "0",
               "--gameplay-states", "0", "--endless-steps", "0"])
    r = json.loads(out.read_text())
    assert rc == 0 and r["data"][0]["path"].endswith(tokens.name)
    assert r["metrics"]["psnr_reference"] == "vq_decoded_tokens" and r["metrics"]["vq_recon_psnr"] is None
    other = tmp_path / "other.npz"
    e = Episodes.load(breakout_file)
    e.replace(actions=(e.actions + 1) % 4).save(other)
    rc = main(["eval", "--data", str(other), "--checkpoint", str(tiny_run), "--indices", str(idx), *small])
    assert rc == 2 and "frozen for" in capsys.readouterr().err


def test_analyze_cli(tmp_path: Path, breakout_file: Path, tiny_run: Path, capsys) -> None:
    from neuroplay.cli import main

    common = ["--data", str(breakout_file), "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--device", "cpu"]
    assert main(["analyze", "vqvae", *common, "--frames", "48", "--worst", "3"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["analyze", "actions", *common, "--states", "2"]) == 0
    assert "RIGHT" in capsys.readouterr().out
    assert main(["analyze", "dream", *common, "--states", "3"]) == 0
    assert "3 states whose real next frame shows the ball" in capsys.readouterr().out
    for f in ("vqvae/codebook_usage.png", "vqvae/worst_reconstructions.png", "actions/actions.png",
              "dream/dream_ball.png"):
        assert (tmp_path / f).stat().st_size > 0, f


def test_gameplay_probes_on_the_perfect_and_copy_models() -> None:
    """Bounce and flight on the toy game: the exact model turns with every real bounce and tracks
    the ball to the pixel; copying the last frame turns never and leaves the ball behind."""
    from neuroplay.evaluation.gameplay import gameplay_probes

    eps = fake_episodes(n_episodes=4, length=72, seed=1)
    vq, data = FakeVQ(), EvalData(eps)
    s = all_samples(eps.episode_lengths, np.arange(eps.n_episodes))
    kw = dict(states=6, flight_steps=12, reset_tries=0)
    g = gameplay_probes(vq, GameModel(), data, s, **kw)
    assert g["bounce_states"] == 6 and g["bounce_rate"] == g["bounce_real_rate"] == 1.0
    assert g["flight_states"] == 6 and g["flight_visible"] == g["flight_real_visible"] == 1.0
    assert g["flight_pos_err"] == 0.0
    assert g["hit_states"] == g["lost_states"] == 0  # the toy has no bricks and never loses its ball
    c = gameplay_probes(vq, CopyModel(), data, s, **kw)
    assert c["bounce_rate"] == 0.0 and c["bounce_real_rate"] == 1.0
    assert c["flight_pos_err"] > 3  # a frozen ball is seen in every frame, in the wrong place


def test_analyze_dream_counts_the_balls_it_shows(tmp_path: Path) -> None:
    from neuroplay.evaluation.analyze import analyze_dream

    eps = fake_episodes(n_episodes=4, length=40, seed=2)
    vq, data = FakeVQ(), EvalData(eps)
    s = all_samples(eps.episode_lengths, np.arange(eps.n_episodes))
    assert analyze_dream(vq, GameModel(), data, s, tmp_path, n=5)["dream_shows_ball"] == 5
    assert analyze_dream(vq, CopyModel(), data, s, tmp_path, n=5)["dream_shows_ball"] == 0  # one token behind
