"""Generate synthetic rollouts with the world model."""
