"""Issue 17, train side: unreadable inputs of a run are one line naming the file and what to do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.train.run import run_training
from cellmae.utils.errors import InputError

from .conftest import set_options, tiny_overrides

runner = CliRunner()


def test_a_truncated_resume_checkpoint_is_named_and_weights_are_readable(sim_shards: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(**{"trainer.max_steps": 2, "checkpoint.every_n_steps": 1})
    out = tmp_path / "run"
    run_training("tiny-camae", sim_shards, out, overrides=overrides)
    # item 11: the final weights are shared files like every other output, not private (0600)
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"{last}: truncated or corrupt resume checkpoint .* delete it"):
        run_training("tiny-camae", sim_shards, out, overrides=overrides, resume=True)
    res = runner.invoke(app, ["train", str(sim_shards), "--out", str(out), "--resume",
                              *set_options(overrides)])
    assert res.exit_code == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {last}: truncated or corrupt"), res.stderr


def test_training_refuses_shards_that_do_not_match_their_manifest(sim_shards: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(sim_shards, shards)
    chunk = sorted(shards.glob("chunk-*.bin"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(InputError, match=rf"{shards}: files do not match manifest.json \({chunk.name} has 100 bytes"):
        run_training("tiny-camae", shards, tmp_path / "run", overrides=tiny_overrides(**{"trainer.max_steps": 1}))
    (shards / "manifest.json").unlink()
    res = runner.invoke(app, ["train", str(shards), "--out", str(tmp_path / "run2"),
                              *set_options(tiny_overrides(**{"trainer.max_steps": 1}))])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: {shards}: no manifest.json, so this shards output is incomplete (a run was "
                                  f"interrupted or is still writing); rerun `cellmae shards build SCREEN --out "
                                  f"{shards} --overwrite`")


@pytest.mark.parametrize("override", ["data.batch_size=0", "data.num_workers=-1", "trainer.max_steps=x"])
def test_bad_train_options_are_one_line_naming_the_key(sim_shards: Path, tmp_path: Path, override: str) -> None:
    res = runner.invoke(app, ["train", str(sim_shards), "--out", str(tmp_path / "run"), "--set", override])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and override.split("=")[0] in lines[0], res.stderr
    assert not (tmp_path / "run").exists()


def test_training_with_loader_workers_runs_their_init_chain(sim_shards: Path, tmp_path: Path) -> None:
    """Loader workers get the parent-death init plus Lightning's seeding (seed_everything(workers=True))."""
    out = run_training("tiny-camae", sim_shards, tmp_path / "run",
                       overrides=tiny_overrides(**{"trainer.max_steps": 2, "data.num_workers": 1}))
    assert (out / "model.safetensors").is_file()
