"""Layer 4: the training loop and seed ensembles served as one checkpoint."""
