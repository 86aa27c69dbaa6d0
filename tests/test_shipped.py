"""The shipped pair, judged by what a player sees, on real Breakout play made here with ale-py.

One small `neuroplay eval` of the bundled checkpoint (`assets/checkpoints/lite`) on 4 episodes of up to 400
steps of a clumsy tracker (noise 0.3, so that balls are lost and served again), made here and never trained
on, with every gameplay probe on a few states and a 200-step autopilot dream beside the real game (~80 s).
The thresholds sit below the gold tier's figures in the model card (where the issue gates are) by the noise
of a few states, and well above what a model without a ball scores: the first shipped pair, whose tokenizer
erased the ball, fails all five tests.
Decoding is argmax, so the figures are deterministic for a given checkpoint and torch build.
"""

from __future__ import annotations

import json

import pytest

from neuroplay.app.catalog import DEFAULT_CHECKPOINT, is_pair
from neuroplay.cli import main
from tests.conftest import play_episodes


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not is_pair(DEFAULT_CHECKPOINT):
        pytest.skip("no bundled checkpoint")
    tmp = tmp_path_factory.mktemp("shipped")
    data, out = tmp / "play.npz", tmp / "eval.json"
    play_episodes(4, 400, seed=100, noise=0.3).save(data)
    rc = main(["eval", "--data", str(data), "--checkpoint", str(DEFAULT_CHECKPOINT), "--split", "all",
               "--tier", "canary", "--indices", str(tmp / "indices.json"), "--limit", "256",
               "--rollout-samples", "24", "--response-states", "8", "--fire-states", "6", "--ball-states", "4",
               "--gameplay-states", "6", "--endless-steps", "200", "--device", "cpu", "--no-progress-bar",
               "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())["metrics"]


def test_the_dream_beats_copy_last_and_keeps_the_objects(shipped: dict) -> None:
    m = shipped
    assert m["val_acc"] > m["copy_last_acc"] and m["rollout_psnr_h10"] > m["copy_last_psnr_h10"] + 2
    assert m["dream_ball_recall_h1"] >= 0.85 and m["dream_ball_precision_h1"] >= 0.85
    assert m["dream_paddle_recall_h1"] == 1.0 and m["dream_paddle_recall_h10"] >= 0.95


def test_keys_move_the_paddle_and_fire_launches_the_ball(shipped: dict) -> None:
    m = shipped
    assert m["action_response_rate"] >= 0.85 and m["action_response_dx_right"] > 0 > m["action_response_dx_left"]
    assert m["fire_launch_rate"] >= 0.8 and m["noop_launch_rate"] <= 0.2
    assert m["reset_launch_rate"] == 1.0 and m["reset_noop_rate"] == 0.0


def test_the_ball_flies_bounces_and_breaks_bricks(shipped: dict) -> None:
    m = shipped
    assert m["flight_states"] >= 3 and m["flight_visible"] >= 0.8 and m["flight_pos_err"] <= 2.0
    assert m["bounce_states"] >= 3 and m["bounce_rate"] >= 0.6
    assert m["hit_states"] >= 3 and m["hit_rate"] >= 0.6 and m["hit_score_rate"] >= 0.4


def test_a_lost_ball_vanishes_and_the_lives_digit_counts_down(shipped: dict) -> None:
    m = shipped
    assert m["lost_states"] >= 2 and m["lost_rate"] >= 0.5
    assert min(m["lost_gone_rate"], m["lost_lives_down_rate"]) >= m["lost_rate"]  # both halves of each pass
    assert m["lost_digit_readable"] >= 0.5


def test_an_autopilot_dream_stays_one_game(shipped: dict) -> None:
    m = shipped
    assert m["endless_frames"] == 201 and m["endless_paddle_visible"] >= 0.99
    assert m["endless_two_paddles"] == 0 and m["endless_two_balls"] <= 2
    assert m["endless_brick_rises"] == 0 and m["endless_ball_in_play"] >= 0.5
