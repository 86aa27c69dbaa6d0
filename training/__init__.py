"""The bundled training pipeline: `neuroplay train vqvae | tokenize | wm | all` (and the game's menu)."""
