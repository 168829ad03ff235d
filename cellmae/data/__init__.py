"""Data layer: screen metadata schema, image readers, tiling, scaling, QC, shards, simulator."""
