"""Regenerate the bundled gene -> chromosome arm table (resources/gene_arms.tsv.gz).

Run once by a maintainer, not at map time: ``python -m cellmae.map.build_arm_table ORG_HS_SQLITE``
reads the SQLite database of Bioconductor's ``org.Hs.eg.db`` (``extdata/org.Hs.eg.sqlite``; e.g.
from the Debian package r-bioc-org.hs.eg.db), whose ``cytogenetic_locations`` are NCBI Gene's
``map_location`` field. Each gene symbol gets the arm of its location (``17q21.31`` -> ``17q``);
genes whose locations name no arm, or two different arms (the X/Y pseudo-autosomal genes), are left
out. The sources, versions and licences are written to resources/ATTRIBUTION.txt by hand.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pandas as pd

from cellmae.map.proximity import ARM_TABLE_RESOURCE, arm_of_location

QUERY = """
select i.symbol as gene, l.cytogenetic_location as location
from gene_info i join cytogenetic_locations l on i._id = l._id
"""


def build(sqlite_path: Path, out: Path) -> pd.DataFrame:
    with sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True) as con:
        rows = pd.read_sql_query(QUERY, con)
    rows["arm"] = rows["location"].map(arm_of_location)
    rows = rows.dropna(subset=["arm"]).drop_duplicates(["gene", "arm"])
    single = rows.groupby("gene")["arm"].transform("nunique") == 1
    table = rows[single].drop_duplicates("gene").sort_values("gene")[["gene", "arm"]]
    table.to_csv(out, sep="\t", index=False, compression={"method": "gzip", "mtime": 0})
    return table


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m cellmae.map.build_arm_table PATH/TO/org.Hs.eg.sqlite")
    out = Path(__file__).parent / "resources" / ARM_TABLE_RESOURCE
    table = build(Path(argv[0]), out)
    print(f"wrote {out}: {len(table)} genes on {table['arm'].nunique()} arms")


if __name__ == "__main__":
    main(sys.argv[1:])
