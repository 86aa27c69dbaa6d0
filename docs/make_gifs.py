"""The README's GIFs: a 600-frame autopilot dream, and real vs dream on the same keys.

    SDL_VIDEODRIVER=dummy python docs/make_gifs.py --checkpoint assets/checkpoints/lite

- `docs/dream.gif`: the tracker autopilot plays the dream from the reset screen (what `neuroplay play
  --autopilot tracker` shows, without the window's HUD), 3x nearest-neighbour;
- `docs/compare.gif`: the autopilot plays the real emulator; the dream, started from the same first frames,
  gets the same actions (`neuroplay compare` with the autopilot at the keys). Left real, right dream.

Prints what happened in each, read by the one detector (`neuroplay.envs.breakout`), so the README's caption
is a measurement: launches, bounces, bricks broken, lost balls, lives counted down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuroplay.envs.breakout import BOUNCE, LAUNCH, LOST, TrackerPolicy, frame_events
from neuroplay.envs.dream import DreamEnv
from neuroplay.envs.real import RealEnv
from neuroplay.evaluation.endless import autopilot, figures


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

    dream = DreamEnv.from_checkpoint(a.checkpoint, device="cpu", seed=a.seed)
    frames, _ = autopilot(dream, a.frames, seed=a.seed)
    write(out / "dream.gif", frames)
    print("dream:", events(frames))

    real, policy = RealEnv(seed=a.seed), TrackerPolicy(noise=0.05, seed=a.seed)
    r = real.reset()
    d = dream.reset(seed=a.seed)  # the same fresh emulator's first frames
    pairs = [(r, d)]
    for _ in range(a.compare_frames):
        act = policy.act(r)
        r, d = real.step(act).frame, dream.step(act).frame
        pairs.append((r, d))
    gap = np.full((84, 2, 3), 255, np.uint8)
    write(out / "compare.gif", np.stack([np.concatenate([x, gap, y], 1) for x, y in pairs]))
    print("compare, real:", events(np.stack([x for x, _ in pairs])))
    print("compare, dream:", events(np.stack([y for _, y in pairs])))


if __name__ == "__main__":
    main()
