"""The README's GIFs: a 600-frame autopilot dream, and real vs dream on the same keys.

    SDL_VIDEODRIVER=dummy python docs/make_gifs.py --checkpoint assets/checkpoints/lite

Both are the game's own sessions (`neuroplay.session`, what the window draws, without its HUD), 3x
nearest-neighbour:
- `docs/dream.gif`: `neuroplay play --autopilot tracker`, the tracker playing the dream from the reset screen;
- `docs/compare.gif`: `neuroplay compare --autopilot tracker`, left the real emulator, right the dream, both
  started from the same game's first frames and given the same actions.

Prints what happened in each, read by the one detector (`neuroplay.envs.breakout`), so the README's caption
is a measurement: launches, bounces, bricks broken, lost balls, lives counted down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuroplay.envs.events import BOUNCE, LAUNCH, LOST, frame_events
from neuroplay.evaluation.endless import figures
from neuroplay.session import open_session


def events(frames: np.ndarray) -> dict[str, int]:
    """Counts of the detector's events over a frame sequence (T, 84, 64, 3), plus the endless figures."""
    ev = frame_events(frames, np.zeros(len(frames) - 1, np.float32), np.array([len(frames) - 1]))  # (T,) bits
    f = figures(frames)
    return {"launches": int((ev & LAUNCH > 0).sum()), "bounces": int((ev & BOUNCE > 0).sum()),
            "lost_balls": int((ev & LOST > 0).sum()), "bricks_broken": f["bricks_broken"],
            "lives_lost": f["lives_lost"], "two_balls": f["two_balls"], "brick_rises": f["brick_rises"],
            "paddle_visible": round(f["paddle_visible"], 3), "ball_in_play": round(f["ball_in_play"], 3)}


def write(path: Path, frames: np.ndarray, scale: int = 3, fps: float = 15.0) -> None:
    """A looping GIF, nearest-neighbour upscaled, 32-colour palette per frame (Breakout has fewer colours)."""
    from PIL import Image

    imgs = [Image.fromarray(np.repeat(np.repeat(f, scale, 0), scale, 1)).convert("P", palette=Image.ADAPTIVE,
                                                                                  colors=32) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0, optimize=True)
    print(f"wrote {path} ({len(frames)} frames, {path.stat().st_size / 1e6:.1f} MB)")


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--checkpoint", default="assets/checkpoints/lite")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--compare-frames", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs")
    a = p.parse_args()
    out = Path(a.out)

    def play(mode: str, steps: int) -> list[list]:
        """The panels (in the window's order) of a `mode` session's first frame and `steps` autopilot frames."""
        session = open_session(mode, a.checkpoint, device="cpu", seed=a.seed, autopilot="tracker", fps=0)
        views = [session.view()] + [session.step() for _ in range(steps)]
        session.close()
        return [[np.array(f) for _, f in v.panels] for v in views]

    dream = np.stack([p[0] for p in play("dream", a.frames)])
    write(out / "dream.gif", dream)
    print("dream:", events(dream))

    pairs = play("compare", a.compare_frames)
    gap = np.full((84, 2, 3), 255, np.uint8)
    write(out / "compare.gif", np.stack([np.concatenate([r, gap, d], 1) for r, d in pairs]))
    print("compare, real:", events(np.stack([r for r, _ in pairs])))
    print("compare, dream:", events(np.stack([d for _, d in pairs])))

if __name__ == "__main__":
    main()
