"""Datasets: the episode file format, collection from ALE, train/val splits and samples."""

from neuroplay.data.episodes import DatasetError, Episodes

__all__ = ["DatasetError", "Episodes"]
