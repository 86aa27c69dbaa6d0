"""Screenshots of every mode for the README: `xvfb-run -s "-screen 0 1600x1000x24" python -m neuroplay.app.shots`.

Each mode is started through the real command line with scripted keys (the autopilot plays, `S` takes
the picture at a fixed tick), so the images show exactly what a person sees. Under Xvfb the window is a
real X11 window; `--headless` uses SDL's dummy driver instead (same pixels, no X server needed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

SHOT_TICK = 45
"""Tick at which the screenshot is taken (3 s at 15 FPS: the ball is in play)."""


def _downs(n: int) -> str:
    """Menu navigation: Down tapped on ticks 1..n."""
    return ",".join(f"{t}:down" for t in range(1, n + 1))


def scenarios(checkpoint: str, replay_file: str) -> dict[str, list[str]]:
    ck = ["--checkpoint", checkpoint] if checkpoint else []
    shot = f"{SHOT_TICK}:s"
    return {
        "menu": ["play", "--mode", "menu", "--keys", f"1:down,{shot}"],
        "train": ["play", "--mode", "menu", "--keys", f"{_downs(5)},7:return,{shot}"],
        "settings": ["play", "--mode", "menu", "--keys", f"{_downs(6)},8:return,{shot}"],
        "dream": ["play", *ck, "--autopilot", "tracker", "--keys", shot],
        "real": ["play", "--mode", "real", "--autopilot", "tracker", "--keys", shot],
        "compare": ["compare", *ck, "--autopilot", "tracker", "--keys", shot],
        "record": ["record", "--out", "{tmp}/shots-rec.npz", "--autopilot", "tracker", "--keys", shot],
        "replay": ["replay", replay_file, *ck, "--keys", f"0-20:right,21:b,22-40:left,{shot}"],
        "help": ["play", *ck, "--keys", f"2:f1,{shot}"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("--checkpoint", default="", help="run folder with vqvae/ and wm/ (default: bundled lite)")
    p.add_argument("--replay-file", default="", help="episode file for the replay shot (default: skip it)")
    p.add_argument("--out", default="docs/screenshots", help="folder for <mode>.png")
    p.add_argument("--scale", default="5", help="window scale")
    p.add_argument("--headless", action="store_true", help="SDL dummy driver instead of a real window")
    p.add_argument("--only", nargs="+", default=None, help="modes to shoot")
    args = p.parse_args(argv)
    from neuroplay.cli import main as np_main

    out = Path(args.out)
    tmp = out / ".tmp"
    failed = []
    for name, cmd in scenarios(args.checkpoint, args.replay_file).items():
        if (args.only and name not in args.only) or (name == "replay" and not args.replay_file):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [c.replace("{tmp}", str(tmp)) for c in cmd]
        extra = ["--frames", str(SHOT_TICK + 2), "--scale", args.scale, "--shots-dir", str(tmp)]
        rc = np_main(cmd + extra + (["--headless"] if args.headless else []))
        pngs = sorted(tmp.glob("*.png"))
        if rc != 0 or not pngs:
            failed.append(name)
            continue
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(str(pngs[-1]), out / f"{name}.png")
        print(f"{out / f'{name}.png'}")
    shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"no screenshot for: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
