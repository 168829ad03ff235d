"""Synthetic perturbation screens with known biology (the embedded default data)."""
