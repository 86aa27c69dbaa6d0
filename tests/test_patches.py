"""The patch tokenizer on real Breakout frames: local (a token changes only where its own pixels do), exact where
its codebook holds the patch, and keeping the ball a player sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neuroplay.data.episodes import Episodes
from neuroplay.envs.breakout import detect
from neuroplay.models.patches import PatchConfig, PatchTokenizer, from_patches, greedy_codebook, to_patches


def test_patches_round_trip_and_tokens_change_only_where_pixels_do(breakout_file: Path) -> None:
    frames = Episodes.load(breakout_file).frames
    assert np.array_equal(from_patches(to_patches(frames[:5])), frames[:5])
    tok = PatchTokenizer.fit(frames[:600], PatchConfig(n_codes=256))
    held = frames[600:]
    t = tok.encode(torch.from_numpy(held)).flatten(1).numpy()  # (n, 336)
    p = to_patches(held)  # (n, 336, 48)
    same = (p[1:] == p[:-1]).all(-1)  # (n-1, 336): the patch did not change
    assert (t[1:][same] == t[:-1][same]).all()  # ... so neither did its token: no context can move it
    book = {row.tobytes() for row in tok.codebook.numpy()}
    exact = np.array([[q.tobytes() in book for q in f] for f in p])  # (n, 336)
    dec = to_patches(tok.decode_uint8(torch.from_numpy(t).view(-1, 21, 16)))
    assert exact.mean() > 0.99 and (dec[exact] == p[exact]).all()  # a patch in the book comes back exactly
    balls = [(detect(a), detect(b)) for a, b in zip(held, tok.decode_uint8(torch.from_numpy(t).view(-1, 21, 16)))]
    with_ball = [(a, b) for a, b in balls if a.ball_visible]
    kept = np.mean([b.ball_visible and abs(a.ball_x - b.ball_x) + abs(a.ball_y - b.ball_y) <= 3 for a, b in with_ball])
    assert len(with_ball) > 100 and kept > 0.95


def test_greedy_codebook_codes_a_rare_patch_before_near_copies_of_a_common_one() -> None:
    base = np.zeros(48, np.uint8)
    near = [base.copy() for _ in range(3)]
    for i, q in enumerate(near):
        q[i] = 2  # a faint variant of the background
    ball = base.copy()
    ball[:6] = 200  # the ball: rare and unlike anything else
    points = np.stack([base, *near, ball])
    counts = np.array([10_000, 500, 500, 500, 3])
    book = greedy_codebook(points, counts, 2)
    assert np.array_equal(book[0], base) and np.array_equal(book[1], ball)
    assert len(greedy_codebook(points, counts, 8)) == 8  # fewer points than codes: all of them, then padding
