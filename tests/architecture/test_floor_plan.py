"""The floor plan: no stage imports a later one (docs/ARCHITECTURE.md).

    utils, layout < data < models < train, embed < map < bench < report < demo < api, cli

Checked on the source with ``ast`` (function-local imports included, since the CLI imports
stages lazily), so a backward reach fails here instead of in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cellmae

ROOT = Path(cellmae.__file__).parent
FLOORS = {
    "utils": 0, "layout": 0, "data": 1, "models": 2, "train": 3, "embed": 3, "map": 4, "bench": 5,
    "report": 6, "demo": 7, "api": 8, "cli": 9, "__main__": 9, "__init__": 9,
}
# Same floor, still separate rooms: training and featurization never import each other.
SEPARATE = {frozenset({"train", "embed"})}


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "cellmae":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if src not in FLOORS:
            bad.append(f"{rel}: room {src!r} is not on the floor plan (add it to FLOORS and docs/ARCHITECTURE.md)")
            continue
        for line, module in _imports(path):
            dst = _room(module)
            if dst is None or dst == src or dst == "__init__":
                continue
            if dst not in FLOORS:
                bad.append(f"{rel}:{line} imports {module}: not on the floor plan")
            elif FLOORS[dst] > FLOORS[src] or frozenset({src, dst}) in SEPARATE:
                bad.append(f"{rel}:{line}: {src} may not import {module} ({dst} is on a later floor)")
    return bad


def test_no_stage_imports_a_later_one():
    assert violations() == []


def test_the_checker_sees_a_backward_reach(tmp_path):
    probe = tmp_path / "x.py"
    probe.write_text("def f():\n    from cellmae.bench.recall import recall\n")
    assert _imports(probe) == [(2, "cellmae.bench.recall")]
    assert FLOORS["bench"] > FLOORS["embed"]
