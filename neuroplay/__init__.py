"""neuroplay: play Atari Breakout dreamed by a learned world model (VQ-VAE tokens + transformer)."""

__version__ = "0.1.0"
