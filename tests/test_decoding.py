"""The play-time decoder: argmax, independent sampling and the coupled draw (neuroplay/models/decoding.py)."""

from __future__ import annotations

import pytest
import torch

from neuroplay.models.decoding import DecodeConfig, TokenDecoder, coupled_draw

V = 5


def _probs(rows: list[list[float]]) -> torch.Tensor:
    p = torch.tensor(rows, dtype=torch.float32)
    return p / p.sum(-1, keepdim=True)  # (N, V)


def _logits(p: torch.Tensor, frames: int) -> torch.Tensor:
    return p.log().expand(frames, *p.shape).clone()  # (F, N, V)


def test_argmax_mode_is_argmax() -> None:
    logits = torch.randn(3, 336, 32)
    assert torch.equal(TokenDecoder(DecodeConfig("argmax"))(logits), logits.argmax(-1))


def test_change_mode_lets_an_event_spread_over_codes_win_as_a_whole() -> None:
    # token 0: stays (code 0) 40%, the ball arrives as one of three codes 20% each: argmax keeps the background
    # token 1: stays (code 2) 70%: no change; token 2: one code holds 90%: as argmax
    p = _probs([[0.4, 0.2, 0.2, 0.2, 0], [0.1, 0.1, 0.7, 0.05, 0.05], [0, 0, 0.05, 0.05, 0.9]])
    prev = torch.tensor([0, 2, 3])
    logits = p.clamp(min=1e-9).log()  # (3, V)
    assert logits.argmax(-1).tolist() == [0, 2, 4]
    got = TokenDecoder(DecodeConfig("change"))(logits, prev)
    assert got[0] in (1, 2, 3) and got[1:].tolist() == [2, 4]
    assert torch.equal(TokenDecoder(DecodeConfig("change"))(logits), logits.argmax(-1))  # no previous frame


def test_coupled_keeps_each_uncertain_tokens_odds() -> None:
    # token 0: stays (code 0) 60%, moves to 1 40%; token 1: 50/30/20 over 2, 3, 4 with 2 the previous one
    p = _probs([[0.6, 0.4, 0, 0, 0], [0, 0, 0.5, 0.3, 0.2]])
    prev = torch.tensor([0, 2]).expand(20000, 2)
    toks = TokenDecoder(DecodeConfig("coupled", confident=0.99), seed=1)(_logits(p, 20000), prev)
    for i in range(2):
        freq = torch.bincount(toks[:, i], minlength=V).float() / len(toks)
        assert torch.allclose(freq, p[i], atol=0.015), (i, freq)


def test_coupled_moves_a_ball_in_one_piece() -> None:
    # The ball is at token 0 (code 1) and may move to token 1 (code 0 -> 1): p(move) 0.4 at both tokens.
    # Drawn together the ball moves whole or stays whole: never two balls, never none.
    p = _probs([[0.4, 0.6, 0, 0, 0], [0.6, 0.4, 0, 0, 0]])
    prev = torch.tensor([1, 0]).expand(5000, 2)
    coupled = TokenDecoder(DecodeConfig("coupled"), seed=2)(_logits(p, 5000), prev)
    balls = (coupled == 1).sum(1)
    assert (balls == 1).all()
    assert 0.35 < (coupled[:, 1] == 1).float().mean() < 0.45  # it does move, at the model's rate
    independent = TokenDecoder(DecodeConfig("sample"), seed=2)(_logits(p, 5000), prev)
    assert ((independent == 1).sum(1) != 1).float().mean() > 0.4  # the failure coupling removes


def test_coupled_never_flickers_a_sure_token() -> None:
    p = _probs([[0.95, 0.05, 0, 0, 0]] * 336)
    prev = torch.zeros(2000, 336, dtype=torch.long)
    coupled = TokenDecoder(DecodeConfig("coupled", confident=0.9), seed=3)(_logits(p, 2000), prev)
    assert (coupled == 0).all()
    sampled = TokenDecoder(DecodeConfig("sample"), seed=3)(_logits(p, 2000), prev)
    assert (sampled != 0).any(1).float().mean() > 0.99  # independent draws change something in every frame


def test_coupled_order_is_previous_token_first() -> None:
    p = _probs([[0.3, 0.7, 0, 0, 0]])[None]  # (1, 1, V): the previous token 0 is the less likely one
    for u, want in ((0.1, 0), (0.29, 0), (0.31, 1), (0.99, 1)):
        got = coupled_draw(p, torch.tensor([[0]]), confident=1.0, u=torch.tensor([u]))
        assert got.item() == want, (u, got)
    # without a previous frame the codes go by falling probability
    assert coupled_draw(p, None, confident=1.0, u=torch.tensor([0.5])).item() == 1


def test_decoders_are_seeded() -> None:
    logits = torch.randn(4, 336, 32)
    prev = torch.randint(0, 32, (4, 336))
    for mode in ("sample", "coupled"):
        a = TokenDecoder(DecodeConfig(mode, confident=0.5), seed=7)(logits, prev)  # type: ignore[arg-type]
        b = TokenDecoder(DecodeConfig(mode, confident=0.5), seed=7)(logits, prev)  # type: ignore[arg-type]
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kw", "flag"), [({"mode": "beam"}, "--decode"), ({"temperature": 0.0}, "--temperature"),
                                          ({"confident": 1.5}, "--confident")])
def test_bad_settings_name_their_flag(kw: dict, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        DecodeConfig(**kw)
