"""Biological benchmarks of a map: pure functions over (metadata, features)."""
