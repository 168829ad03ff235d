"""The ``cellmae`` command: one verb per stage, plus ``demo`` that chains them.

This module holds no logic. Each stage package owns a ``cli.py`` with ``register(app)``
that adds its command(s); heavy imports (torch, timm, ...) happen inside the command
functions so that ``cellmae --help`` stays fast.
"""

from __future__ import annotations

import typer

from cellmae import __version__
from cellmae.bench.cli import register as register_bench
from cellmae.data.cli import register as register_data
from cellmae.data.simulate.cli import register as register_simulate
from cellmae.demo.cli import register as register_demo
from cellmae.embed.cli import register as register_embed
from cellmae.models.cli import register as register_models
from cellmae.profiles.cli import register as register_map
from cellmae.report.cli import register as register_report
from cellmae.train.cli import register as register_train

app = typer.Typer(
    name="cellmae",
    help="Masked autoencoders for cell microscopy: simulate | shards | train | embed | map | bench | report | demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cellmae {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """cellmae: from microscopy images to a benchmarked map of biology."""


for _register in (
    register_simulate,
    register_data,
    register_models,
    register_train,
    register_embed,
    register_map,
    register_bench,
    register_report,
    register_demo,
):
    _register(app)


if __name__ == "__main__":
    app()
