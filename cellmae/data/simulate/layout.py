"""Plate layouts: which perturbation goes into which well of which plate of which experiment.

Every experiment holds every gene (``gene_replicates`` wells, each with a randomly drawn guide)
and every compound dose, so replicates span batches. Wells are shuffled over the inner wells of
each plate (the outer ring is left empty, as screens do against edge effects) and every plate
gets its own negative controls.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from cellmae.data.simulate.biology import Biology

_ROWS = [*string.ascii_uppercase, *(f"A{c}" for c in string.ascii_uppercase)]
CONTROL_GENE = "EMPTY"


def inner_wells(rows: int, cols: int) -> list[str]:
    """Well ids ('B02', ...) of a rows x cols plate without its outer ring."""
    return [f"{_ROWS[r]}{c + 1:02d}" for r in range(1, rows - 1) for c in range(1, cols - 1)]


def experiment_names(spec) -> list[str]:
    """Experiment (batch) names, e.g. SIM-01, SIM-02."""
    return [f"{spec.experiment_prefix}-{i + 1:02d}" for i in range(spec.n_experiments)]


def well_layout(spec, bio: Biology, rng: np.random.Generator) -> pd.DataFrame:
    """One row per well: experiment, plate, well, gene, treatment, concentration, perturbation_type,
    well_type, guide, efficiency."""
    wells = inner_wells(spec.plate_rows, spec.plate_cols)
    capacity = len(wells) - spec.controls_per_plate
    guides = bio.guides.groupby("gene", sort=False)
    rows = []
    for exp in experiment_names(spec):
        items = []
        for gene in bio.genes["gene"]:
            g = guides.get_group(gene)
            for k in rng.integers(0, len(g), size=spec.gene_replicates):
                items.append((gene, g["guide"].iloc[k], np.nan, "CRISPR", "treatment", float(g["efficiency"].iloc[k])))
        for cpd, dose in bio.compounds[["compound", "concentration"]].itertuples(index=False):
            items += [("", cpd, float(dose), "COMPOUND", "treatment", 1.0)] * spec.compound_replicates
        n_plates = max(spec.plates_per_experiment, -(-len(items) // capacity))
        order = rng.permutation(len(items))
        for p, chunk in enumerate(np.array_split(order, n_plates)):
            plate_items = [items[i] for i in chunk]
            plate_items += [(CONTROL_GENE, CONTROL_GENE, np.nan, "CONTROL", "negative_control", 0.0)] * spec.controls_per_plate
            pos = rng.permutation(len(wells))[: len(plate_items)]
            for (gene, treatment, conc, ptype, wtype, eff), w in zip(plate_items, pos, strict=True):
                rows.append((exp, p + 1, wells[w], gene, treatment, conc, ptype, wtype, eff))
    cols = ["experiment", "plate", "well", "gene", "treatment", "concentration", "perturbation_type", "well_type", "efficiency"]
    df = pd.DataFrame(rows, columns=cols)
    df.insert(0, "well_id", df["experiment"] + "_" + df["plate"].astype(str) + "_" + df["well"])
    return df.sort_values(["experiment", "plate", "well"], kind="stable").reset_index(drop=True)
