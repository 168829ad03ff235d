"""Phenotypic activity and consistency mAP, computed by copairs (Kalinin et al. 2025).

*Activity*: well-level profiles; a perturbation's replicate wells are the positives and control
wells the negatives (copairs' reference-index recipe), so mAP says how well a perturbation's
replicates are retrieved above controls. Without controls, negatives are wells of other
perturbations (replicate retrieval).
*Consistency*: aggregated profiles; perturbations sharing a functional group (a complex, or a
compound's target) are positives, all others negatives. Genes in several groups go through
copairs' multilabel AP.

p-values come from copairs' null distributions and are Benjamini-Hochberg corrected by
``copairs.map.mean_average_precision``; we only choose the pairing rules.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cellmae.data.profiles import Profiles, perturbation_key
from cellmae.data.schema import IS_CONTROL, PLATE

REFERENCE = "Metadata_ReferenceIndex"
KEY = "Metadata_PerturbationKey"
GROUP = "Metadata_Group"

MAP_COLUMNS = [
    "kind", "entity", "reference", "n_profiles", "mean_average_precision",
    "mean_normalized_average_precision", "p_value", "corrected_p_value", "significant",
]


def _quiet_copairs() -> None:
    logging.getLogger("copairs").setLevel(logging.WARNING)


def _finish(maps: pd.DataFrame, aps: pd.DataFrame, *, by: str, kind: str, reference: str, threshold: float) -> pd.DataFrame:
    counts = aps.dropna(subset=["average_precision"]).groupby(by).size()
    out = pd.DataFrame({
        "kind": kind,
        "entity": maps[by].astype(str).to_numpy(),
        "reference": reference,
        "n_profiles": maps[by].map(counts).fillna(0).astype(int).to_numpy(),
        "mean_average_precision": maps["mean_average_precision"].to_numpy(),
        "mean_normalized_average_precision": maps["mean_normalized_average_precision"].to_numpy(),
        "p_value": maps["p_value"].to_numpy(),
        "corrected_p_value": maps["corrected_p_value"].to_numpy(),
    })
    out["significant"] = out["corrected_p_value"] < threshold
    return out[MAP_COLUMNS].sort_values("entity", kind="stable").reset_index(drop=True)


def activity_map(
    profiles: Profiles,
    *,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
    same_plate_controls: bool = True,
) -> pd.DataFrame:
    """Phenotypic activity mAP per perturbation key (perturbation, or compound@concentration).

    ``profiles`` are well-level rows including control wells (``Metadata_IsControl``). With
    ``same_plate_controls`` (and every plate holding controls) a well's negatives are the controls
    of its own plate; otherwise all controls. Returns the columns of :data:`MAP_COLUMNS`,
    ``kind="activity"``; ``reference`` says which negatives were used (``same_plate_controls``,
    ``controls`` or ``other_perturbations``).
    """
    from copairs import map as copairs_map
    from copairs.matching import assign_reference_index

    _quiet_copairs()
    meta = profiles.meta
    control = meta[IS_CONTROL].to_numpy(bool)
    df = pd.DataFrame({KEY: perturbation_key(meta).to_numpy(), IS_CONTROL: control})
    keys = df.loc[~control, KEY]
    replicated = keys.map(keys.value_counts()) >= 2
    if not replicated.any():
        raise ValueError("activity mAP needs at least one perturbation with >= 2 replicate wells")
    if control.sum() >= 1:
        reference = "controls"
        df = assign_reference_index(df, pd.Index(np.flatnonzero(control)), reference_col=REFERENCE, default_value=-1)
        neg_sameby = []
        if same_plate_controls and PLATE in meta.columns:
            plates = meta[PLATE].astype(str).to_numpy()
            if set(plates[~control]) <= set(plates[control]):
                # Negatives = controls of the same plate (as in JUMP's activity mAP): plate-matched, and
                # the pair count grows with wells x controls-per-plate instead of wells x all controls.
                df[PLATE] = plates
                neg_sameby = [PLATE]
                reference = "same_plate_controls"
        ap = copairs_map.average_precision(
            df, profiles.features, pos_sameby=[KEY, REFERENCE], pos_diffby=[],
            neg_sameby=neg_sameby, neg_diffby=[KEY, REFERENCE], progress_bar=False,
        )
        ap = ap[~ap[IS_CONTROL].to_numpy(bool)]
    else:
        reference = "other_perturbations"
        ap = copairs_map.average_precision(
            df, profiles.features, pos_sameby=[KEY], pos_diffby=[], neg_sameby=[], neg_diffby=[KEY],
            progress_bar=False,
        )
    maps = copairs_map.mean_average_precision(
        ap, [KEY], null_size=null_size, threshold=threshold, seed=seed, progress_bar=False,
    )
    return _finish(maps, ap, by=KEY, kind="activity", reference=reference, threshold=threshold)


def consistency_map(
    profiles: Profiles,
    groups: pd.DataFrame,
    *,
    entity_column: str | None = None,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
    max_groups: int | None = 250,
) -> pd.DataFrame:
    """Phenotypic consistency mAP per functional group over aggregated profiles.

    ``groups`` maps ``gene`` -> ``group`` (one row per membership, see
    :func:`cellmae.bench.inputs.read_groups`); profiles are matched on ``entity_column`` (default
    ``Metadata_Perturbation``). Groups with fewer than two profiles in the map are left out; of the
    rest at most ``max_groups`` (a seeded sample) are scored, among the genes of those groups.
    Returns :data:`MAP_COLUMNS` with ``kind="consistency"`` and ``entity`` = the group.
    """
    from copairs import map as copairs_map

    from cellmae.data.schema import PERTURBATION

    _quiet_copairs()
    entity_column = entity_column or PERTURBATION
    names = profiles.meta[entity_column].astype(str).to_numpy()
    member = groups[groups["gene"].isin(set(names))]
    sizes = member.groupby("group")["gene"].nunique()
    eligible = np.sort(sizes[sizes >= 2].index.to_numpy())
    if max_groups is not None and len(eligible) > max_groups:
        # copairs pairs every labelled profile with every other (and multilabel explodes rows per
        # label), so cost grows with (labelled genes)^2: a seeded sample of groups bounds it.
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, max_groups, replace=False))
    member = member[member["group"].isin(eligible)]
    if member["group"].nunique() < 2:
        raise ValueError(
            f"consistency mAP needs >= 2 functional groups with >= 2 members in the map; "
            f"found {member['group'].nunique()} (of {groups['group'].nunique()} groups given)"
        )
    labels = member.groupby("gene")["group"].agg(sorted)
    keep = np.flatnonzero(pd.Series(names).isin(labels.index).to_numpy())
    feats = profiles.features[keep]
    lab = labels.reindex(names[keep]).to_list()
    if all(len(x) == 1 for x in lab):
        df = pd.DataFrame({GROUP: [x[0] for x in lab]})
        ap = copairs_map.average_precision(
            df, feats, pos_sameby=[GROUP], pos_diffby=[], neg_sameby=[], neg_diffby=[GROUP], progress_bar=False,
        )
    else:
        df = pd.DataFrame({GROUP: lab})
        ap = copairs_map.multilabel.average_precision(
            df, feats, pos_sameby=[GROUP], pos_diffby=[], neg_sameby=[], neg_diffby=[GROUP],
            multilabel_col=GROUP, progress_bar=False,
        )
    maps = copairs_map.mean_average_precision(
        ap, [GROUP], null_size=null_size, threshold=threshold, seed=seed, progress_bar=False,
    )
    return _finish(maps, ap, by=GROUP, kind="consistency", reference="other_groups", threshold=threshold)


def map_summary(table: pd.DataFrame) -> dict:
    """Per kind: number of entities, fraction significant after FDR, mean mAP."""
    out: dict = {}
    for kind in ("activity", "consistency"):
        t = table[table["kind"] == kind]
        out[kind] = {
            "n": int(len(t)),
            "fraction_significant": float(t["significant"].mean()) if len(t) else None,
            "mean_map": float(t["mean_average_precision"].mean()) if len(t) else None,
        }
    return out
