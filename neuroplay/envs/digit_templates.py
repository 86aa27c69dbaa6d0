"""The scoreboard's digits as ALE draws them after the project's preprocessing: data for `breakout.read_scoreboard`.

Each entry is one digit in one cell, 4 rows x 5 columns of the frame's per-pixel channel maximum, as hex. The
cells differ by position because the 160 -> 64 area resize blends each column phase differently. They were
rendered by `render_digit_templates` (Breakout's RAM holds the score in BCD at 76/77 and the lives at 57, so
every digit can be drawn on demand); `tests/test_objects.py` renders them again and compares.
The lives cell has no 0: the game is over before it could be drawn.
"""

from __future__ import annotations

import numpy as np

DIGIT_ROWS = slice(2, 6)
"""Frame rows of the scoreboard digits."""
DIGIT_CELLS = (14, 21, 27, 40)
"""First column of each digit cell: score hundreds, tens, units, then lives."""
DIGIT_W = 5
"""Columns of one cell."""

_HEX: dict[tuple[int, int], str] = {
    (0, 0): "558e727d8e558e00398e558e00398e558e727d8e",
    (0, 1): "00008e550000008e550000008e550000008e5500",
    (0, 2): "4472727d8e2239395b8e558e393939558e727272",
    (0, 3): "4472727d8e0000395b8e0000395b8e4472727d8e",
    (0, 4): "558e00398e558e395b8e2239395b8e000000398e",
    (0, 5): "558e727272558e3939392239395b8e4472727d8e",
    (0, 6): "558e000000558e393939558e395b8e558e727d8e",
    (0, 7): "4472727d8e000000398e000000398e000000398e",
    (0, 8): "558e727d8e558e395b8e558e395b8e558e727d8e",
    (0, 9): "558e727d8e558e395b8e2239395b8e000000398e",
    (1, 0): "8e7d728e558e39008e558e39008e558e7d728e55",
    (1, 1): "00558e000000558e000000558e000000558e0000",
    (1, 2): "7272728e553939398e558e5b3939228e7d727244",
    (1, 3): "7272728e550022398e550022398e557272728e55",
    (1, 4): "8e39008e558e5b398e553939398e550000008e55",
    (1, 5): "8e7d7272448e5b3939223939398e557272728e55",
    (1, 6): "8e390000008e5b3939228e5b398e558e7d728e55",
    (1, 7): "7272728e550000008e550000008e550000008e55",
    (1, 8): "8e7d728e558e5b398e558e5b398e558e7d728e55",
    (1, 9): "8e7d728e558e5b398e553939398e550000008e55",
    (2, 0): "728872838e727200558e727200558e728872838e",
    (2, 1): "001c8e3900001c8e3900001c8e3900001c8e3900",
    (2, 2): "5b7272838e2d39396c8e727d3939397288727272",
    (2, 3): "5b7272838e000b396c8e000b396c8e5b7272838e",
    (2, 4): "727200558e727d396c8e2d39396c8e000000558e",
    (2, 5): "7288727272727d3939392d39396c8e5b7272838e",
    (2, 6): "7272000000727d393939727d396c8e728872838e",
    (2, 7): "5b7272838e000000558e000000558e000000558e",
    (2, 8): "728872838e727d396c8e727d396c8e728872838e",
    (2, 9): "728872838e727d396c8e2d39396c8e000000558e",
    (3, 1): "00398e1c0000398e1c0000398e1c0000398e1c00",
    (3, 2): "72727288723939397d728e6c39392d8e8372725b",
    (3, 3): "72727288720017397d720017397d727272728872",
    (3, 4): "8e550072728e6c397d723939397d720000007272",
    (3, 5): "8e8372725b8e6c39392d3939397d727272728872",
    (3, 6): "8e550000008e6c39392d8e6c397d728e83728872",
    (3, 7): "7272728872000000727200000072720000007272",
    (3, 8): "8e837288728e6c397d728e6c397d728e83728872",
    (3, 9): "8e837288728e6c397d723939397d720000007272",
}


def templates() -> dict[tuple[int, int], np.ndarray]:
    """(cell, digit) -> (4, 5) uint8 template."""
    return {k: np.frombuffer(bytes.fromhex(v), np.uint8).reshape(4, DIGIT_W) for k, v in _HEX.items()}


def render_digit_templates(seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    """Draw every digit in every cell with the real emulator (writes the score and lives into RAM)."""
    from neuroplay.envs.real import RealEnv

    env = RealEnv(seed=seed)
    env.reset()
    out: dict[tuple[int, int], np.ndarray] = {}
    for d in range(10):
        env.ale.setRAM(76, d)  # hundreds, BCD
        env.ale.setRAM(77, d * 16 + d)  # tens and units, BCD
        env.ale.setRAM(57, d if d else 5)  # lives; 0 would end the game
        grey = env.step(0).frame.max(-1)
        for c, x in enumerate(DIGIT_CELLS):
            if c < 3 or d:
                out[(c, d)] = grey[DIGIT_ROWS, x : x + DIGIT_W].copy()
    return out
