"""JUMP / Cell Painting metadata read as published: platemaps and perturbation tables, no hand conversion.

The tables a JUMP user has (github.com/jump-cellpainting/datasets, ``metadata/``), told apart by
their columns, never by their file names:

* **well** tables (``well.csv.gz``, any platemap): ``Metadata_Plate`` + ``Metadata_Well`` (+
  ``Metadata_JCP2022`` or ``Metadata_Perturbation`` ...), joined on plate and well;
* **plate** tables (``plate.csv.gz``): ``Metadata_Plate`` without ``Metadata_Well`` (``Metadata_Batch``,
  ``Metadata_PlateType``), joined on plate;
* **perturbation** tables keyed by ``Metadata_JCP2022``: ``crispr.csv.gz`` (``Metadata_Symbol``,
  ``Metadata_NCBI_Gene_ID``) -> CRISPR; ``orf.csv.gz`` (``Metadata_Symbol`` + ``Metadata_broad_sample`` /
  ``Metadata_Vector`` / ``Metadata_Transcript``) -> ORF; ``compound.csv.gz`` (``Metadata_InChIKey`` /
  ``Metadata_SMILES``) -> COMPOUND; ``perturbation_control.csv`` (``Metadata_pert_type`` poscon /
  negcon / empty, ``Metadata_Name``, ``Metadata_modality``).

A gene perturbation is named by its ``Metadata_Symbol``, a compound by its ``Metadata_JCP2022``; a
control by its ``Metadata_Name`` when a table gives one. Negative controls (``negcon``, or the older
``Metadata_pert_type == control`` with ``Metadata_control_type == negcon``) are ``Metadata_IsControl``;
positive controls are kept as perturbations and flagged in ``Metadata_ControlType``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import ReadError, read_metadata_csv

JCP = "Metadata_JCP2022"
SYMBOL = "Metadata_Symbol"
CONTROL_TYPE = "Metadata_ControlType"  # negcon / poscon... / empty, as the tables say
_MODALITY = {"crispr": "CRISPR", "orf": "ORF", "compound": "COMPOUND"}
_PLATE_TYPES = {"CRISPR": "CRISPR", "ORF": "ORF", "COMPOUND": "COMPOUND", "COMPOUND_EMPTY": "COMPOUND",
                "TARGET1": "COMPOUND", "TARGET2": "COMPOUND", "POSCON8": "COMPOUND", "DMSO": "COMPOUND"}
# Names for the perturbation when no JUMP table names it, in order of preference.
PERT_ALIASES = (S.PERTURBATION, JCP, "Metadata_broad_sample", "Metadata_gene", "Metadata_Compound")


def table_kind(table: pd.DataFrame) -> str:
    """well | plate | perturbation, from the columns (the module docstring)."""
    cols = set(table.columns)
    if S.PLATE in cols:
        return "well" if S.WELL in cols else "plate"
    if JCP in cols:
        return "perturbation"
    return "unknown"


def perturbation_modality(table: pd.DataFrame) -> str | None:
    """CRISPR / ORF / COMPOUND for a JCP2022-keyed table, None for a control table (types per row)."""
    cols = set(table.columns)
    if "Metadata_modality" in cols or "Metadata_perturbation_modality" in cols:
        return None
    if cols & {"Metadata_InChIKey", "Metadata_SMILES", "Metadata_InChI"}:
        return "COMPOUND"
    if SYMBOL in cols:
        return "ORF" if cols & {"Metadata_broad_sample", "Metadata_Vector", "Metadata_Transcript"} else "CRISPR"
    return None


def read_tables(paths, storage_options=None) -> list[tuple[str, pd.DataFrame]]:
    from cellmae.data.readers.storage import with_options

    out = []
    for p in paths:
        loc = with_options(p, storage_options)
        table = read_metadata_csv(loc, "perturbation CSV")
        if table_kind(table) == "unknown":
            raise ReadError(f"{loc}: a perturbation CSV needs {S.PLATE} (+ {S.WELL}) or {JCP} columns; have "
                            f"{list(table.columns)}")
        out.append((str(loc), table))
    return out


def _join_wells(meta: pd.DataFrame, tables: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Well- and plate-table columns aligned to ``meta``'s rows; a site with no well row names the table."""
    joined = meta[[S.PLATE, S.WELL]].reset_index(drop=True)
    wells = [(src, t.assign(**{S.WELL: t[S.WELL].str.strip().str.upper()})) for src, t in tables
             if table_kind(t) == "well"]
    if wells:
        allw = pd.concat([t for _, t in wells], ignore_index=True)
        dup = allw.duplicated([S.PLATE, S.WELL])
        if dup.any():
            k = int(np.flatnonzero(dup.to_numpy())[0])
            src, row = next((s, k - off) for s, off, n in _offsets(wells) if off <= k < off + n)
            raise ReadError(f"{src}: row {row + 1}: duplicated ({S.PLATE}, {S.WELL}) = "
                            f"({allw[S.PLATE].iloc[k]!r}, {allw[S.WELL].iloc[k]!r}) across the well tables")
        joined = joined.merge(allw, on=[S.PLATE, S.WELL], how="left", indicator=True)
        miss = np.flatnonzero(joined["_merge"].eq("left_only").to_numpy())
        if len(miss):
            r = joined.iloc[miss[0]]
            raise ReadError(f"{wells[0][0]}: no row for plate {r[S.PLATE]!r}, well {r[S.WELL]!r} (row {miss[0] + 1} "
                            f"of the load_data CSV; {len(miss)} site(s) unmatched)")
        joined = joined.drop(columns="_merge")
    for _, t in tables:
        if table_kind(t) == "plate":
            extra = [c for c in t.columns if c not in joined.columns or c == S.PLATE]
            joined = joined.merge(t.drop_duplicates(S.PLATE)[extra], on=S.PLATE, how="left")
    return joined


def _offsets(named):
    off = 0
    for src, t in named:
        yield src, off, len(t)
        off += len(t)


def _perturbation_info(tables: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """One row per JCP2022 id: type (CRISPR/ORF/COMPOUND), Symbol, Name, control type."""
    rows = []
    for src, t in tables:
        if table_kind(t) != "perturbation":
            continue
        modality = perturbation_modality(t)
        part = pd.DataFrame({JCP: t[JCP]})
        if modality is None:
            mod_col = next((c for c in ("Metadata_modality", "Metadata_perturbation_modality") if c in t), None)
            part["_type"] = t[mod_col].str.lower().map(_MODALITY) if mod_col else None
        else:
            part["_type"] = modality
        part["_symbol"] = t.get(SYMBOL)
        part["_name"] = t.get("Metadata_Name") if modality is None else None
        part["_control"] = _control_types(t)
        part["_src"] = src
        rows.append(part)
    if not rows:
        return pd.DataFrame(columns=[JCP, "_type", "_symbol", "_name", "_control"])
    info = pd.concat(rows, ignore_index=True)
    # A control table and a modality table may both list an id: merge their fields, first non-empty wins.
    return info.groupby(JCP, sort=False).first().reset_index()


def _control_types(t: pd.DataFrame) -> pd.Series:
    """negcon / poscon... / empty per row, from JUMP's current and older column conventions."""
    none = pd.Series([None] * len(t), index=t.index, dtype=object)
    pert = t["Metadata_pert_type"].str.strip().str.lower() if "Metadata_pert_type" in t else none
    ctrl = t["Metadata_control_type"].str.strip().str.lower() if "Metadata_control_type" in t else none
    # current: pert_type in {trt, negcon, poscon, empty}; older: pert_type control + control_type negcon/poscon_*
    named = pert.isin(["negcon", "poscon", "empty"]) | pert.str.startswith("poscon", na=False)
    picked = [a if ok else (b if isinstance(b, str) and b else None) for a, ok, b in zip(pert, named, ctrl, strict=True)]
    return pd.Series(picked, index=t.index, dtype=object)


def jump_perturbations(meta: pd.DataFrame, raw: pd.DataFrame, tables: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """``meta`` (one row per load_data row) with Perturbation, PerturbationType, IsControl and the
    JUMP columns (``Metadata_JCP2022``, ``Metadata_Symbol``, ``Metadata_ControlType``, ...) filled in."""
    cols = _join_wells(meta, tables) if any(table_kind(t) in ("well", "plate") for _, t in tables) else None
    source = raw.reset_index(drop=True)
    if cols is not None:  # platemap columns win over same-named load_data columns
        source = pd.concat([source.drop(columns=[c for c in cols.columns if c in source]), cols], axis=1)
    out = meta.copy()
    pert_col = next((c for c in PERT_ALIASES if c in source.columns), None)
    if pert_col is None:
        out[S.PERTURBATION] = S.UNKNOWN
        out[S.PERTURBATION_TYPE] = S.UNKNOWN
        out[S.IS_CONTROL] = False
        return out
    info = _perturbation_info(tables)
    ids = source[pert_col]
    merged = pd.DataFrame({JCP: ids}).merge(info, on=JCP, how="left") if pert_col == JCP else None
    if pert_col == JCP:
        for col in (JCP, SYMBOL, "Metadata_InChIKey", "Metadata_PlateType"):
            if col in source.columns:
                out[col] = source[col].to_numpy()
        out[JCP] = ids.to_numpy()
    ptype = pd.Series(["COMPOUND"] * len(out), dtype=object)  # the long-standing default for load_data ids
    if "Metadata_PlateType" in source.columns:
        plate_type = source["Metadata_PlateType"].str.upper().map(_PLATE_TYPES)
        ptype = plate_type.fillna(ptype)
    control = pd.Series([None] * len(out), dtype=object)
    name = ids.copy()
    if merged is not None:
        ptype = merged["_type"].fillna(ptype)
        symbol = merged["_symbol"]
        gene = ptype.isin(["CRISPR", "ORF"]) & symbol.notna()
        name = name.where(~gene, symbol)
        name = merged["_name"].where(merged["_control"].notna() & merged["_name"].notna(), name)
        control = merged["_control"]
        if symbol.notna().any():
            out[SYMBOL] = symbol.fillna(out.get(SYMBOL, pd.Series([None] * len(out)))).to_numpy()
    own = _control_types(source)
    control = control.fillna(own)
    if S.PERTURBATION_TYPE in source.columns:
        ptype = source[S.PERTURBATION_TYPE].str.upper().where(source[S.PERTURBATION_TYPE].notna(), ptype)
    ptype = ptype.where(~control.eq("empty"), "EMPTY")
    out[S.PERTURBATION] = name.to_numpy()
    out[S.PERTURBATION_TYPE] = ptype.to_numpy()
    if S.IS_CONTROL in source.columns:
        out[S.IS_CONTROL] = source[S.IS_CONTROL].to_numpy()
    elif control.notna().any():
        out[S.IS_CONTROL] = control.eq("negcon").to_numpy()
    else:
        out[S.IS_CONTROL] = out[S.PERTURBATION_TYPE].eq("CONTROL").to_numpy()
    if control.notna().any():
        out[CONTROL_TYPE] = control.fillna("trt").to_numpy()
    if S.CONCENTRATION in source.columns:
        out[S.CONCENTRATION] = source[S.CONCENTRATION].to_numpy()
    return out
