"""CLI command(s) of this stage. Owned by the stage; registered by cellmae/cli.py."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's command(s) to ``app`` (filled in by the stage's implementation)."""
