"""Featurize whole screens with a model, from any block, resumably."""
