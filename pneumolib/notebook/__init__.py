"""Layer 6: what the notebooks run and show (a Series of settings passed explicitly; tables and figures)."""
