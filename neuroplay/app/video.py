"""Saving what the window shows: PNG screenshots and GIF/MP4 videos (no pygame here: RGB arrays in).

GIF goes through imageio (Pillow), which every install has. MP4 uses imageio-ffmpeg when it is
installed, else OpenCV's built-in `mp4v` encoder (opencv-python is already a dependency), so `V`
works without an extra download either way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroplay.errors import UsageError


def stamp_path(folder: str | Path, prefix: str, suffix: str) -> Path:
    """`folder/prefix-YYYYmmdd-HHMMSS[-k].suffix`, not overwriting anything."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    p, k = d / f"{base}{suffix}", 1
    while p.exists():
        p, k = d / f"{base}-{k}{suffix}", k + 1
    return p


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 image."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"{path}: cannot write PNG")
    return path


class VideoWriter:
    """Append RGB frames, `close()` to finish; the format follows the suffix (.gif or .mp4)."""

    def __init__(self, path: str | Path, fps: float = 15.0) -> None:
        self.path = Path(path)
        self.fps = fps if fps > 0 else 15.0
        self.frames = 0
        suffix = self.path.suffix.lower()
        if suffix not in (".gif", ".mp4"):
            raise UsageError(f"--video {self.path}: use a .gif or .mp4 file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._w: Any = None
        self._cv: Any = None
        if suffix == ".gif":
            import imageio.v2 as iio

            self._w = iio.get_writer(self.path, mode="I", duration=1000.0 / self.fps, loop=0)
        else:
            try:
                import imageio.v2 as iio
                import imageio_ffmpeg  # noqa: F401

                self._w = iio.get_writer(self.path, fps=self.fps, macro_block_size=1)
            except ImportError:
                self._cv = None  # opened lazily: OpenCV needs the frame size

    def add(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self._w is not None:
            self._w.append_data(rgb)
        else:
            import cv2

            if self._cv is None:
                h, w = rgb.shape[:2]
                self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
                if not self._cv.isOpened():
                    raise OSError(f"{self.path}: OpenCV cannot write MP4 here; use a .gif name")
            self._cv.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.frames += 1

    def close(self) -> Path:
        if self._w is not None:
            self._w.close()
        if self._cv is not None:
            self._cv.release()
        self._w = self._cv = None
        return self.path
