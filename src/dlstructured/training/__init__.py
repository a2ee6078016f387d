"""Training a network: the loop, its engines, checkpoints, progress and plots."""
