"""Training: optimizer, pure step functions, device mesh, checkpoints and the epoch loop."""
