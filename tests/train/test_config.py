"""Config presets and overrides: clear errors for unknown keys, wrong types and impossible values."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellmae.train.config import ConfigError, TrainConfig, list_presets, load_config, parse_overrides


def test_every_bundled_preset_loads_and_names_a_registered_model() -> None:
    from cellmae.models.registry import preset_config

    names = list_presets()
    assert {"tiny-camae", "tiny-mae", "tiny-cnnmae", "tiny-wsl", "vits16-camae", "vitl8-camae"} <= set(names)
    for name in names:
        cfg = load_config(name)
        preset_config(cfg.model.name)  # raises for an unknown model
        assert (cfg.task == "wsl") == cfg.model.name.startswith("wsl")


def test_demo_preset_is_the_patch16_tiny_camae() -> None:
    """The demo's model: 16 tokens per channel of a 64 px crop, 4 blocks, channel-agnostic."""
    from cellmae.demo.settings import DemoSettings
    from cellmae.models.registry import create_model

    cfg = load_config(DemoSettings.train_config)
    model = create_model(cfg.model.name, **cfg.model.kwargs)
    assert model.cfg.patch_size == 16 and model.cfg.img_size == 64 and model.num_blocks == 4
    assert model.cfg.tokenizer == "channel_agnostic"
    assert cfg.trainer.max_steps == DemoSettings.steps


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config("tiny-camae", ["optim.lr=1e-3", "trainer.max_steps=7", "optim.betas=[0.9, 0.99]",
                                     "model.kwargs.embed_dim=96", "trainer.max_time=null", "trainer.devices=2",
                                     "model.grad_checkpointing=true"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.trainer.max_steps == 7 and cfg.optim.betas == [0.9, 0.99] and cfg.trainer.devices == 2
    assert cfg.model.kwargs == {"depth": 4, "embed_dim": 96}  # dotted override updates the preset's kwargs
    assert cfg.model.grad_checkpointing is True
    # a derived preset's YAML mapping replaces kwargs instead of merging
    assert load_config("tiny-cnnmae").model.kwargs == {}


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=1e-3", r"unknown key 'optim.lrr'; did you mean 'optim.lr'"),
    ("lr=1e-3", r"unknown key 'lr'; did you mean 'optim.lr'"),
    ("trainer.max_step=5", r"did you mean 'trainer.max_steps'"),
    ("optim.lr=fast", r"optim.lr: expected a number, got 'fast'"),
    ("data.batch_size=8.5", r"data.batch_size: expected an integer"),
    ("trainer.progress_bar=maybe", r"expected a boolean"),
    ("optim.name=adam", r"'adam' is not one of 'adamw', 'lion'; did you mean 'adamw'"),
    ("model.mask_ratio=1.2", r"model.mask_ratio: must be < 1.0, got 1.2"),
    ("optim.lr=-1", r"optim.lr: must be > 0.0"),
    ("data.batch_size=0", r"data.batch_size: must be >= 1"),
    ("optim.betas=[0.9]", r"optim.betas: expected two numbers in \[0, 1\)"),
    ("trainer.max_time=2h", r"trainer.max_time: expected 'DD:HH:MM:SS'"),
    ("trainer.devices=zero", r"trainer.devices"),
    ("model=big", r"'model' is a section"),
    ("optim.lr", r"expected KEY=VALUE"),
])
def test_bad_overrides_raise_clear_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config("tiny-camae", [override])
    assert override.split("=")[0] in str(err.value)  # the error names the offending override


def test_bad_yaml_is_named_by_file(tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("base: tiny-camae\noptim:\n  weight_decay: lots\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: optim.weight_decay: expected a number"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"no such YAML file or bundled preset; did you mean 'tiny-camae'"):
        load_config("tiny-camea")
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(loop)


def test_cross_key_checks() -> None:
    with pytest.raises(ConfigError, match="training never stops"):
        load_config(None, ["trainer.max_steps=-1"])
    with pytest.raises(ConfigError, match="task 'wsl' needs a classifier"):
        load_config("tiny-camae", ["task=wsl"])
    assert isinstance(load_config({"trainer": {"max_steps": 3}}), TrainConfig)
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": "1", "c": "x"}}


def test_cli_reports_config_errors_and_prints_resolved_config() -> None:
    from typer.testing import CliRunner

    from cellmae.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--config", "tiny-camae", "--set", "optim.lrr=1", "--print-config"])
    assert res.exit_code != 0 and "did you mean" in res.output
    res = runner.invoke(app, ["train", "--config", "tiny-camae", "--set", "optim.name=lion", "--print-config"])
    assert res.exit_code == 0 and "name: lion" in res.output
    res = runner.invoke(app, ["train", "--list-presets"])
    assert "vitl8-camae" in res.output
