"""Regenerate the bundled gene groups (resources/gene_groups.csv) from public relationship files.

Run once by a maintainer, not at simulation time: ``python -m cellmae.data.simulate.build_resources``
reads the relationship sets shipped in cellmae/data/relationships (or a folder given as argument).

Only CC-BY 4.0 (HuMAP) and CC0 (Reactome) pairs are used so that the result may ship in the
package (see resources/ATTRIBUTION.txt). HuMAP pairs are co-complex memberships, so the graph is
close to a union of cliques: greedily taking the largest disjoint maximal cliques recovers
complexes; Reactome cliques then add pathway modules for genes not yet placed. Groups are disjoint
so that every simulated gene has exactly one phenotype direction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

# (name, file, most groups taken): a bounded bundle (~100 KB) with complexes and pathway modules
SOURCES = (("HuMAP", "HuMAP.csv.gz", 750), ("Reactome", "Reactome.csv.gz", 250))
MIN_SIZE, MAX_SIZE = 3, 8


def disjoint_cliques(pairs: pd.DataFrame, used: set[str]) -> list[list[str]]:
    """Largest-first disjoint maximal cliques (size >= MIN_SIZE, trimmed to MAX_SIZE)."""
    import networkx as nx  # build-time only: networkx is not a runtime dependency

    g = nx.Graph()
    g.add_edges_from((a, b) for a, b in pairs.itertuples(index=False) if a != b)
    g.remove_nodes_from(used)
    cliques = sorted((sorted(c) for c in nx.find_cliques(g) if len(c) >= MIN_SIZE), key=lambda c: (-len(c), c))
    out: list[list[str]] = []
    for clique in cliques:
        free = [x for x in clique if x not in used]
        if len(free) < MIN_SIZE:
            continue
        free = free[:MAX_SIZE]
        used.update(free)
        out.append(free)
    return out


def gene_groups(rel_dir: Path) -> pd.DataFrame:
    """Table (group, source, gene) of disjoint gene groups from the CC0/CC-BY relationship files."""
    rows, used = [], set()
    for source, name, most in SOURCES:
        pairs = pd.read_csv(rel_dir / name, usecols=["entity1", "entity2"]).dropna().astype(str)
        for k, members in enumerate(disjoint_cliques(pairs, used)[:most]):
            rows += [(f"{source}-{k + 1:04d}", source, gene) for gene in members]
    return pd.DataFrame(rows, columns=["group", "source", "gene"])


if __name__ == "__main__":
    rel = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "relationships"
    out = Path(__file__).parent / "resources" / "gene_groups.csv"
    table = gene_groups(rel)
    table.to_csv(out, index=False)
    print(f"wrote {out}: {table['group'].nunique()} groups, {len(table)} genes")
