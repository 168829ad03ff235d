"""Synthetic perturbation screens with known biology (the embedded default data).

``simulate_screen(out_dir, preset, seed, **overrides)`` writes an RxRx-layout screen plus its
ground truth; ``PRESETS`` lists the named presets. See docs/simulate.md.
"""

from cellmae.data.simulate.presets import PRESETS, ScreenSpec, resolve_spec
from cellmae.data.simulate.writer import simulate_screen

__all__ = ["PRESETS", "ScreenSpec", "resolve_spec", "simulate_screen"]
