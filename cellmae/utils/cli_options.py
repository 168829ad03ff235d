"""The options every ``cellmae`` command spells the same way, and how a command speaks.

The grammar (docs/ARCHITECTURE.md): the input is positional, the output is ``--out/-o``, a long
command takes ``--progress/--no-progress`` and ``--quiet/-q``, and a command that prints a summary
takes ``--json``. Commands declare these options with the objects below, so a flag cannot drift
between commands; :class:`Speaker` decides what goes to the terminal.

Progress and messages go to stderr; the summary (its text lines, or the ``--json`` object) goes to
stdout, so ``cellmae map ... --json | jq`` works.
"""

from __future__ import annotations

import json
from typing import Any

import typer

PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars (on stderr).")
QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (and the --json summary).")
JSON = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout.")


class Speaker:
    """Writes a command's messages (stderr) and its summary (stdout: text lines, or one JSON object)."""

    def __init__(self, *, quiet: bool = False, as_json: bool = False):
        self.quiet, self.as_json = quiet, as_json

    @property
    def chatty(self) -> bool:
        """Whether progress messages and human-readable lines are shown."""
        return not (self.quiet or self.as_json)

    def say(self, line: str) -> None:
        """A progress or result line (printed literally, never wrapped); silent with --quiet or --json."""
        if self.chatty:
            typer.echo(line, err=True)

    def summary(self, record: dict[str, Any], *lines: str) -> None:
        """The command's result: ``record`` as JSON with --json, else ``lines`` (unless --quiet)."""
        if self.as_json:
            typer.echo(json.dumps(record, default=str))
        elif not self.quiet:
            for line in lines:
                typer.echo(line)
