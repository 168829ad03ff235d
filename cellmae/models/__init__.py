"""Encoders, tokenizers, decoders, masking, losses, classifiers, presets and checkpoints."""
