"""The ``cellmae`` command: one verb per stage, plus ``demo`` that chains them.

This module holds no logic. Each stage package owns a ``cli.py`` with ``register(app)``
that adds its command(s); heavy imports (torch, timm, ...) happen inside the command
functions so that ``cellmae --help`` stays fast.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

from cellmae import __version__
from cellmae.utils.clock import exit_on_bad_source_date_epoch

exit_on_bad_source_date_epoch()  # before the stages' imports below pull in scipy, which would fail on it

from cellmae.bench.cli import register as register_bench  # noqa: E402
from cellmae.data.cli import register as register_data  # noqa: E402
from cellmae.data.simulate.cli import register as register_simulate  # noqa: E402
from cellmae.demo.cli import register as register_demo  # noqa: E402
from cellmae.embed.cli import register as register_embed  # noqa: E402
from cellmae.map.cli import register as register_map  # noqa: E402
from cellmae.models.cli import register as register_models  # noqa: E402
from cellmae.report.cli import register as register_report  # noqa: E402
from cellmae.train.cli import register as register_train  # noqa: E402
from cellmae.utils.cpu_process import tune_cpu_process  # noqa: E402

_DEBUG_KEY = "cellmae.debug"


class _OneErrorPath(TyperGroup):
    """Every command's failures leave through here: one line on stderr, never a traceback.

    Expected failures (bad input, unreadable or incomplete files, a full disk, a busy output
    folder) exit with code 2; anything else is a bug and exits 1 with a pointer to ``--debug``.
    Lines are written with ``click.echo``: no markup is interpreted and nothing is wrapped, so a
    path can be copied from the terminal whatever its width.
    """

    def invoke(self, ctx: typer.Context):
        from cellmae.utils.errors import EXIT_USER_ERROR, is_expected, one_line

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:  # typer's (vendored click's) usage and click errors
            if not hasattr(exc, "ctx") or type(exc).__name__ == "NoArgsIsHelpError" or _debugging(ctx):
                raise
            # Plain, not typer's rich panel: the panel wraps a long path at the terminal width.
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            typer.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if _debugging(ctx):
                raise
            if is_expected(exc):
                typer.echo(f"error: {one_line(exc)}", err=True)
                ctx.exit(EXIT_USER_ERROR)
            typer.echo(
                f"internal error: {type(exc).__name__}: {one_line(exc)} "
                "(rerun with --debug for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(1)


def _debugging(ctx: typer.Context) -> bool:
    return bool(ctx.meta.get(_DEBUG_KEY) or os.environ.get("CELLMAE_DEBUG"))


app = typer.Typer(
    name="cellmae",
    cls=_OneErrorPath,
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
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of a failure instead of its one-line message."),
) -> None:
    """cellmae: from microscopy images to a benchmarked map of biology."""
    ctx.meta[_DEBUG_KEY] = debug
    # Before any command imports torch (they import it lazily): idle OpenMP threads spin briefly, then
    # sleep, and glibc keeps freed activations for reuse. cellmae/utils/cpu_process.py says why,
    # docs/speed.md measures it.
    tune_cpu_process()


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
