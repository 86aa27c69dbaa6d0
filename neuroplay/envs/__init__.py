"""Environments with one interface (`reset() -> frame`, `step(action) -> EnvStep`): the real game and the dream."""
