"""Shared fixtures: paths to the real data in ../shared and deterministic seeding."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLMAE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (real images, relationship files, test vectors)."""
    if not (SHARED / "data").is_dir():
        pytest.fail(f"real test data not found at {SHARED}/data (set CELLMAE_SHARED to its location)")
    return SHARED


@pytest.fixture(scope="session")
def example_fly_dir(shared_dir: Path) -> Path:
    """Three real 3-channel Drosophila Kc167 fields (CellProfiler ExampleFly, BSD-3)."""
    return shared_dir / "data" / "images" / "example_fly"


@pytest.fixture(scope="session")
def relationships_dir(shared_dir: Path) -> Path:
    """Real relationship CSVs (entity1,entity2): CORUM, HuMAP, Reactome, SIGNOR, StringDB."""
    return shared_dir / "data" / "relationships"


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - legacy global RNG some libraries still read
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
