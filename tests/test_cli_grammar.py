"""One CLI grammar (docs/ARCHITECTURE.md): input positional, output --out/-o, the same progress,
verbosity and --json flags on every command that has them, spelled the same way everywhere."""

from __future__ import annotations

import pytest
import typer.main

from cellmae.cli import app

PENDING: set[str] = set()  # commands not yet on the grammar (none)
LONG = {"simulate", "train", "map", "bench", "demo", "shards build", "embed"}  # progress bars, minutes of work
NO_OUTPUT = {"models", "shards inspect"}  # they only print


def _commands() -> dict:
    root = typer.main.get_command(app)
    ctx = root.make_context("cellmae", [], resilient_parsing=True)
    found = {}
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):  # a group (typer vendors its own click)
            found |= {f"{name} {sub}": cmd.get_command(ctx, sub) for sub in cmd.list_commands(ctx)}
        else:
            found[name] = cmd
    return found


def _flags(cmd) -> dict:
    return {flag: p for p in cmd.params for flag in (*p.opts, *p.secondary_opts)}


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NO_OUTPUT))
def test_output_is_out_and_input_is_positional(name):
    cmd = COMMANDS[name]
    flags = _flags(cmd)
    assert {"--out", "-o"} <= set(flags) and flags["-o"] is flags["--out"], name
    inputs = [p for p in cmd.params if p.param_type_name == "option" and p.name in ("shards", "screen", "input")]
    assert not inputs, f"{name}: the input is positional, not {inputs[0].opts}"


@pytest.mark.parametrize("name", sorted(LONG - PENDING))
def test_long_commands_take_progress_and_quiet(name):
    flags = _flags(COMMANDS[name])
    assert {"--progress", "--no-progress", "--quiet", "-q"} <= set(flags), name


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - PENDING))
def test_shared_flags_mean_one_thing(name):
    """-o is always --out, -q always --quiet, -s is never taken (it meant --seed here and --shards there)."""
    flags = _flags(COMMANDS[name])
    for short, long in (("-o", "--out"), ("-q", "--quiet")):
        if short in flags:
            assert flags[short] is flags.get(long), f"{name}: {short} is not {long}"
    assert "-s" not in flags, name
    summary = {"simulate", "train", "map", "bench", "curate", "report", "demo", "scaling-study", "models",
               "shards build", "shards inspect", "embed"}
    if name in summary:
        assert "--json" in flags, name
