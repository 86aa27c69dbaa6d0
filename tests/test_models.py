"""Both models of the reference design: sizes, shapes, the quantizer's EMA and dead-code reset, attention variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroplay.checkpoint import CheckpointError, load_checkpoint, load_pair, save_checkpoint
from neuroplay.config import get_preset
from neuroplay.models.vqvae import VQVAE, to_uint8_image
from neuroplay.models.world_model import TemporalWorldModel

from .conftest import play_episodes


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_spec_sizes_match_the_spec() -> None:
    spec = get_preset("spec")
    assert abs(n_params(VQVAE(spec.vq)) - 6.0e6) / 6.0e6 < 0.10
    wm = TemporalWorldModel(spec.wm)
    assert abs(n_params(wm) - 8.3e6) / 8.3e6 < 0.05
    assert spec.wm.seq_len == 4 * 336 + 1 + 336 == 1681
    assert wm.action_spatial_bias.shape == (4, 21, 16, 256)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return play_episodes(1, 40, seed=5).frames


def test_vqvae_shapes_and_round_trip(frames: np.ndarray) -> None:
    vq = VQVAE(get_preset("tiny").vq).eval()
    x = torch.from_numpy(frames[:5])
    tokens = vq.encode(x)
    assert tokens.shape == (5, 21, 16) and tokens.dtype == torch.long
    assert 0 <= tokens.min() and tokens.max() < 32
    out = vq.decode(tokens)
    assert out.shape == (5, 3, 84, 64) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(vq.decode(tokens.flatten(1)), out)
    assert torch.equal(vq.encode(vq.to_input(x)), tokens)  # uint8 and [-1, 1] inputs agree
    assert to_uint8_image(out).shape == (5, 84, 64, 3)


def test_quantizer_ema_and_dead_code_reset_move_the_codebook(frames: np.ndarray) -> None:
    torch.manual_seed(0)
    vq = VQVAE(get_preset("tiny").vq).train()
    q = vq.quantizer
    with torch.no_grad():
        q.embedding[1:] += 100.0  # all codes but 0 far away: dead
    before = q.embedding.clone()
    x = vq.to_input(torch.from_numpy(frames[:8]))
    for _ in range(q.cfg.dead_code_every):
        out = vq(x)
    assert out.perplexity > 0
    assert int(q.n_resets) >= 20  # the far codes were re-seeded from encoder outputs
    moved = (q.embedding - before).norm(dim=1)
    assert (moved[1:] > 50).float().mean() > 0.6
    assert not torch.equal(q.embedding[0], before[0])  # the EMA updated the used code


def test_straight_through_gradient_reaches_the_encoder(frames: np.ndarray) -> None:
    vq = VQVAE(get_preset("tiny").vq).train()
    out = vq(vq.to_input(torch.from_numpy(frames[:2])))
    (out.recon.pow(2).mean() + out.commitment_loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vq.encoder.parameters() if p.dim() > 1)


@pytest.mark.parametrize("preset", ["tiny", "tiny-full"])
def test_world_model_outputs_and_action_dependence(preset: str) -> None:
    torch.manual_seed(0)
    wm = TemporalWorldModel(get_preset(preset).wm).eval()
    hist = torch.randint(0, 32, (3, 4, 336))
    out = wm(hist, torch.tensor([0, 1, 2]))
    assert out.logits.shape == (3, 336, 32)
    same = wm(hist[:1].repeat(2, 1, 1), torch.tensor([2, 3])).logits
    assert not torch.allclose(same[0], same[1])  # LEFT and RIGHT give different predictions
    assert wm.predict_next(hist, torch.tensor([0, 0, 0])).shape == (3, 336)


def test_block_causal_sequence_equals_one_sample_forward() -> None:
    """A clip (a target per frame) computes, at its first full window, what the one-sample forward does.

    Later windows differ by design: in a clip (and in the KV cache at play time) frame t-3 was itself
    encoded with its own 3 predecessors, which a lone 4-frame sample does not have.
    """
    torch.manual_seed(0)
    wm = TemporalWorldModel(get_preset("tiny").wm).eval()
    fr, ac = torch.randint(0, 32, (2, 9, 336)), torch.randint(0, 4, (2, 8))
    seq = wm.forward_sequence(fr, ac, last_only=False).logits  # (B, 8, 336, V)
    one = wm(fr[:, :4], ac[:, 3]).logits
    torch.testing.assert_close(seq[:, 3], one, atol=1e-4, rtol=1e-4)
    last = wm.forward_sequence(fr[:, :4], ac[:, 3:4], last_only=True).logits[:, -1]
    torch.testing.assert_close(last, seq[:, 3], atol=1e-4, rtol=1e-4)


def test_frame_pass_does_not_see_the_future() -> None:
    torch.manual_seed(0)
    wm = TemporalWorldModel(get_preset("tiny").wm).eval()
    fr, ac = torch.randint(0, 32, (1, 8, 336)), torch.randint(0, 4, (1, 7))
    a = wm.forward_sequence(fr, ac, last_only=False).logits
    fr2 = fr.clone()
    fr2[:, 6:] = torch.randint(0, 32, (1, 2, 336))
    b = wm.forward_sequence(fr2, ac, last_only=False).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])  # predictions up to frame 5 ignore frames 6, 7


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vq = VQVAE(get_preset("tiny").vq)
    d = save_checkpoint(tmp_path / "vq", vq, "tiny", {"step": 3})
    back, info = load_checkpoint(d, "vqvae")
    assert info["step"] == 3 and info["preset"] == "tiny"
    assert all(torch.equal(a, b) for a, b in zip(vq.state_dict().values(), back.state_dict().values()))
    with pytest.raises(CheckpointError, match="expected world_model"):
        load_checkpoint(d, "world_model")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="do not match the sha256"):
        load_checkpoint(d)
    # weights of another size under the same config: a clear shape error, not a torch traceback
    other = save_checkpoint(tmp_path / "other", VQVAE(get_preset("lite").vq), "lite")
    (other / "config.json").write_text((d / "config.json").read_text().replace(info["weights_sha256"], ""))
    with pytest.raises(CheckpointError, match="shape|do not fit"):
        load_checkpoint(other)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)


def test_load_pair_refuses_mismatched_models(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "vqvae", VQVAE(get_preset("tiny").vq), "tiny")
    save_checkpoint(tmp_path / "wm", TemporalWorldModel(get_preset("tiny").wm), "tiny", {"vq_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="another VQ-VAE"):
        load_pair(tmp_path)
