"""Layer 2: the networks, one-file checkpoints with their preprocessing and threshold, the one inference pass."""
