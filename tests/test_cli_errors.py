"""The CLI's one error path: one literal, unwrapped line on stderr, exit 2; ``--debug`` for tracebacks."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.utils.errors import EXIT_USER_ERROR, InputError, one_line, reading

from .embed.conftest import write_rxrx_screen

runner = CliRunner()


def _one_error_line(res) -> str:
    assert res.exit_code == EXIT_USER_ERROR, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("columns", ["40", "300"])
@pytest.mark.parametrize("name", ["x[/b]", "[red]plate[/red]", "very_long_" * 12 + "folder"])
def test_paths_are_printed_literally_and_unwrapped(tmp_path, name, columns):
    screen = tmp_path / name
    res = runner.invoke(app, ["shards", "build", str(screen), "--out", str(tmp_path / "o")], env={"COLUMNS": columns})
    line = _one_error_line(res)
    assert str(screen) in line and not (tmp_path / "o").exists()


def test_usage_errors_are_one_plain_line(tmp_path):
    res = runner.invoke(app, ["map", str(tmp_path / ("deep_" * 20)), "--out", str(tmp_path / "o"), "--align", "bogus"],
                        env={"COLUMNS": "40"})
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "--align" in lines[0] and "bogus" in lines[0], res.stderr


def test_debug_shows_the_traceback_instead(tmp_path):
    args = ["shards", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, ["--debug", *args])
    assert res.exit_code != 0 and isinstance(res.exception, ValueError) and "error:" not in res.stderr
    res = runner.invoke(app, args, env={"CELLMAE_DEBUG": "1"})
    assert isinstance(res.exception, ValueError)


def test_a_bug_is_one_line_that_points_to_debug(tmp_path, monkeypatch):
    import cellmae.data.readers as readers

    def broken(*args, **kwargs):
        raise TypeError("unexpected keyword 'x'")

    monkeypatch.setattr(readers, "open_screen", broken)
    res = runner.invoke(app, ["shards", "build", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: TypeError") and "--debug" in lines[0]


def test_truncated_checkpoint_names_the_weights_file(tmp_path):
    from cellmae.models import create_model, save_pretrained

    ckpt = save_pretrained(create_model("camae_vit_tiny_patch16_64"), tmp_path / "ckpt")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    screen = write_rxrx_screen(tmp_path / "s", plates=1, wells=2, sites=1, size=64)
    res = runner.invoke(app, ["embed", str(screen), "--model", str(ckpt), "--out", str(tmp_path / "e"),
                              "--num-workers", "0"])
    line = _one_error_line(res)
    assert str(weights) in line and "truncated" in line


def test_refused_pickle_never_suggests_weights_only_false(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "ran"),))

    bad = tmp_path / "openphenom.pth"
    torch.save({"state_dict": Payload()}, bad)
    screen = write_rxrx_screen(tmp_path / "s", plates=1, wells=2, sites=1, size=64)
    res = runner.invoke(app, ["embed", str(screen), "--model", f"openphenom:{bad}", "--out", str(tmp_path / "e")])
    line = _one_error_line(res)
    assert str(bad) in line and "weights_only" not in line and "refuses" in line and not (tmp_path / "ran").exists()


def test_reading_names_the_file_once():
    with pytest.raises(InputError, match=r"^/data/x.parquet: cannot read this table \(boom\); hint$"):
        with reading("/data/x.parquet", "table", "hint"):
            raise ValueError("boom")
    with pytest.raises(ValueError, match=r"^/data/x.parquet is bad$"):  # already named: unchanged
        with reading("/data/x.parquet", "table"):
            raise ValueError("/data/x.parquet is bad")
    with pytest.raises(KeyError):  # a bug is not dressed up as bad input
        with reading("/data/x.parquet", "table"):
            raise KeyError("k")


def test_disk_full_and_multi_line_messages_become_one_line():
    import errno

    assert one_line(OSError(errno.ENOSPC, "No space left on device", "/out/a.parquet")) == (
        "/out/a.parquet: the disk is full: free space or write to another --out")
    assert one_line(ValueError("a\n  b\n")) == "a; b"
