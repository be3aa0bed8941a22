"""pneumolib: a reproducible, honest chest X-ray pneumonia classifier that re-runs a dated experiment log."""
__version__ = "0.1.0"
