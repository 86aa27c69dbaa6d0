"""Where the game finds things: the default checkpoint, other checkpoints, episode files (no pygame).

Bundled assets are resolved relative to the package (the repository's top-level `assets/`), so the
game works from any working directory; training runs and data are looked up under the working
directory, where `neuroplay train`/`collect` put them by default.
"""

from __future__ import annotations

from pathlib import Path

from neuroplay.checkpoint import CheckpointError
from neuroplay.config import ASSETS, SHIPPED_CHECKPOINT

DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINT


def is_pair(d: Path) -> bool:
    """A folder with `vqvae/` and `wm/` checkpoints (a run folder or an asset)."""
    return (d / "vqvae" / "config.json").is_file() and (d / "wm" / "config.json").is_file()


def resolve_checkpoint(checkpoint: str | Path | None, required: bool = True) -> Path | None:
    """The checkpoint to play: the given folder, else the bundled `lite`; a clear error if neither."""
    if checkpoint:
        d = Path(checkpoint)
        if not d.is_dir():
            raise CheckpointError(f"--checkpoint {d}: no such folder (it should hold vqvae/ and wm/)")
        if not is_pair(d):
            raise CheckpointError(f"--checkpoint {d}: needs vqvae/ and wm/ checkpoint folders inside "
                                  "(a run folder from `neuroplay train all`)")
        return d
    if is_pair(DEFAULT_CHECKPOINT):
        return DEFAULT_CHECKPOINT
    if not required:
        return None
    raise CheckpointError(
        f"no world model found (the bundled {DEFAULT_CHECKPOINT} is missing); pass --checkpoint RUN_DIR "
        "or train one: neuroplay collect --frames 200000 --out data/breakout.npz && "
        "neuroplay train all --data data/breakout.npz --run-dir runs/mine")


def find_checkpoints(extra: list[str | Path] | None = None) -> list[Path]:
    """Playable pairs: given ones, the bundled assets, then `runs/*` under the working directory."""
    found: list[Path] = []
    for d in [*(Path(e) for e in extra or [] if e)]:
        if is_pair(d):
            found.append(d)
    for root in (ASSETS / "checkpoints", Path("runs")):
        if root.is_dir():
            found += sorted(d for d in root.iterdir() if d.is_dir() and is_pair(d))
    seen: set[Path] = set()
    return [d for d in found if not (d.resolve() in seen or seen.add(d.resolve()))]  # type: ignore[func-returns-value]


def find_datasets(extra: list[str | Path] | None = None) -> list[Path]:
    """Episode files (.npz) to replay or train on: given ones, then `data/` and `recordings/`."""
    found = [Path(e) for e in extra or [] if e and Path(e).is_file()]
    for root in (Path("data"), Path("recordings")):
        if root.is_dir():
            found += sorted(p for p in root.glob("*.npz") if not p.name.startswith("."))
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]
