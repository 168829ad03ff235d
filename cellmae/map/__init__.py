"""EFAAR after embedding: filter, align (center-scale, PCA, TVN), aggregate."""
