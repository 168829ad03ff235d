"""The known biology of a simulated screen: genes, groups, effect vectors, guides, compounds.

Phenotypes live in a small *morphology-parameter space* (``MORPHOLOGY_PARAMS``, in units of the
natural cell-to-cell standard deviation). Genes of one real complex or pathway (from the bundled
HuMAP/Reactome groups) share a direction in that space; strengths vary per group and gene; a
sizeable fraction of groups and genes has no phenotype at all. Compounds phenocopy a target gene
with a Hill dose-response, plus a small off-target component, so compound-gene benchmarks have an
answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

# Every axis is rendered as a visible change (see render.cell_properties for the mapping).
MORPHOLOGY_PARAMS: tuple[str, ...] = (
    "cell_size", "cell_elongation", "nucleus_size", "nucleus_irregularity", "density",
    "multinucleation", "dna_intensity", "er_intensity", "er_spread", "actin_intensity",
    "actin_fibers", "nucleoli", "mito_intensity", "mito_spread", "golgi_dispersal",
    "texture_coarseness", "membrane_ruffling",
)
N_PARAMS = len(MORPHOLOGY_PARAMS)
EFFECT_COLUMNS: tuple[str, ...] = tuple(f"effect_{i}" for i in range(N_PARAMS))


GENE_GROUPS_RESOURCE = "gene_groups.csv"  # in cellmae/data/simulate/resources (build_resources.py writes it)


@cache
def bundled_gene_groups() -> pd.DataFrame:
    """Disjoint real gene groups (group, source, gene) bundled with the package (HuMAP, Reactome)."""
    path = resources.files("cellmae.data.simulate") / "resources" / GENE_GROUPS_RESOURCE
    with resources.as_file(path) as p:
        return pd.read_csv(p, dtype=str)


@dataclass(frozen=True)
class Biology:
    """Ground truth: one row per gene, per guide and per compound dose."""

    genes: pd.DataFrame  # gene, group, source, strength, has_phenotype, effect_0..
    guides: pd.DataFrame  # guide, gene, efficiency
    compounds: pd.DataFrame  # compound, target_gene, concentration, strength, ec50_uM, hill, offtarget_0..

    def gene_effect(self, gene: str) -> np.ndarray:
        """Full-knockout effect vector of ``gene`` (zeros for genes without phenotype)."""
        row = self.genes.loc[self.genes["gene"] == gene, list(EFFECT_COLUMNS)]
        return row.to_numpy(np.float64)[0]

    def compound_effect(self, compound: str, concentration: float) -> np.ndarray:
        """Effect vector of ``compound`` at ``concentration`` uM (target phenocopy + off-target)."""
        rows = self.compounds[self.compounds["compound"] == compound]
        row = rows.iloc[int(np.argmin(np.abs(rows["concentration"].to_numpy() - concentration)))]
        frac = hill_fraction(concentration, row["ec50_uM"], row["hill"])
        off = row[[f"offtarget_{i}" for i in range(N_PARAMS)]].to_numpy(np.float64)
        return frac * (self.gene_effect(row["target_gene"]) + off)


def hill_fraction(dose: float | np.ndarray, ec50: float, hill: float) -> float | np.ndarray:
    """Fraction of the maximal effect at ``dose`` (Hill equation)."""
    dose = np.asarray(dose, dtype=np.float64)
    return dose**hill / (dose**hill + ec50**hill)


def _group_direction(rng: np.random.Generator) -> np.ndarray:
    """A sparse unit direction: 2-4 morphology axes, so each group has a describable phenotype."""
    k = int(rng.integers(2, 5))
    axes = rng.choice(N_PARAMS, size=k, replace=False)
    d = np.zeros(N_PARAMS)
    d[axes] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(0.5, 1.0, size=k)
    return d / np.linalg.norm(d)


def sample_biology(spec, rng: np.random.Generator) -> Biology:
    """Draw genes (from real groups), their effects, guides and compounds for ``spec``."""
    table = bundled_gene_groups()
    if spec.exclude_genes:
        hit = table.loc[table["gene"].isin(spec.exclude_genes), "group"]
        table = table[~table["group"].isin(hit)]
    groups = table["group"].drop_duplicates().to_numpy()
    order = rng.permutation(len(groups))
    members = table.groupby("group", sort=False)
    rows, n = [], 0
    for gi in order:
        if n >= spec.n_genes:
            break
        g = members.get_group(groups[gi])
        take = g.iloc[: spec.n_genes - n]  # the last group may be cut to fit n_genes
        rows.append(take)
        n += len(take)
    if n < spec.n_genes:
        left = " outside the groups of exclude_genes" if spec.exclude_genes else ""
        raise ValueError(f"simulate: n_genes={spec.n_genes} exceeds the {len(table)} bundled genes{left}")
    genes = pd.concat(rows, ignore_index=True)

    group_ids = genes["group"].drop_duplicates().tolist()
    # an exact share of null groups (not a coin per group) so small screens have them too
    n_null = int(round(spec.null_group_fraction * len(group_ids)))
    if spec.null_group_fraction > 0 and len(group_ids) >= 2:
        n_null = max(1, n_null)
    active = np.ones(len(group_ids), bool)
    active[1 + rng.permutation(len(group_ids) - 1)[: min(n_null, len(group_ids) - 1)]] = False
    active[0] = True  # at least one group with a phenotype ...
    base = np.exp(rng.normal(np.log(2.2), 0.45, size=len(group_ids)))
    base[0] = 5.0  # ... and it is strong, so tests and previews always have a visible group
    directions = {g: _group_direction(rng) for g in group_ids}
    gi_of = {g: i for i, g in enumerate(group_ids)}

    effects = np.zeros((len(genes), N_PARAMS))
    strength = np.zeros(len(genes))
    for i, g in enumerate(genes["group"]):
        j = gi_of[g]
        if not active[j] or (j > 0 and rng.random() < spec.null_gene_fraction):
            continue
        d = directions[g] + rng.normal(0.0, 0.12, N_PARAMS)  # genes of a complex agree, not exactly
        d /= np.linalg.norm(d)
        strength[i] = base[j] * np.exp(rng.normal(0.0, 0.25))
        effects[i] = strength[i] * d
    genes["strength"] = strength
    genes["has_phenotype"] = strength > 0
    genes[list(EFFECT_COLUMNS)] = effects

    # guides: knockdown efficiency varies per guide; most guides work well, some poorly
    eff = rng.beta(5.0, 1.8, size=(len(genes), spec.guides_per_gene))
    guides = pd.DataFrame(
        {
            "guide": [f"{g}_g{k + 1}" for g in genes["gene"] for k in range(spec.guides_per_gene)],
            "gene": np.repeat(genes["gene"].to_numpy(), spec.guides_per_gene),
            "efficiency": eff.ravel(),
        }
    )
    return Biology(genes=genes, guides=guides, compounds=_sample_compounds(spec, genes, rng))


def _sample_compounds(spec, genes: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    cols = ["compound", "target_gene", "concentration", "strength", "ec50_uM", "hill"]
    off_cols = [f"offtarget_{i}" for i in range(N_PARAMS)]
    if spec.n_compounds == 0:
        return pd.DataFrame(columns=cols + off_cols)
    hits = genes[genes["has_phenotype"]]
    weights = hits["strength"].to_numpy() / hits["strength"].sum()  # drug targets tend to be strong hits
    replace = spec.n_compounds > len(hits)
    targets = rng.choice(hits.index.to_numpy(), size=spec.n_compounds, replace=replace, p=weights)
    doses = np.asarray(spec.doses_uM, dtype=np.float64)
    rows = []
    for c, t in enumerate(targets):
        ec50 = float(np.exp(rng.normal(np.log(np.sqrt(doses.min() * doses.max())), 0.5)))
        hill = float(rng.uniform(1.0, 2.0))
        target_strength = float(genes.at[t, "strength"])
        off = rng.normal(0.0, 1.0, N_PARAMS)
        off *= 0.2 * target_strength / np.linalg.norm(off)  # off-target: 20% of the on-target size
        for dose in doses:
            frac = float(hill_fraction(dose, ec50, hill))
            rows.append([f"CPD-{c + 1:04d}", genes.at[t, "gene"], dose, frac * target_strength, ec50, hill, *off])
    return pd.DataFrame(rows, columns=cols + off_cols)


def relationship_pairs(genes: pd.DataFrame) -> pd.DataFrame:
    """Gene pairs that share a phenotype direction (same group, both with phenotype), entity1 < entity2."""
    hits = genes[genes["has_phenotype"]]
    pairs = [
        (a, b) if a < b else (b, a)
        for _, g in hits.groupby("group", sort=True)
        for i, a in enumerate(g["gene"])
        for b in g["gene"].iloc[i + 1 :]
    ]
    return pd.DataFrame(sorted(pairs), columns=["entity1", "entity2"])
