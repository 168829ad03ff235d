"""Fixtures for training tests: tiny shard sets (simulated screen, real ExampleFly) and a tiny config."""

from __future__ import annotations

from pathlib import Path

import pytest

# A CA-MAE small enough for a 2-core CPU: 32px crops, patch 8 (16 tokens per channel), 2 blocks.
TINY_MODEL = {"img_size": 32, "depth": 2, "embed_dim": 64, "num_heads": 2,
              "decoder_embed_dim": 64, "decoder_depth": 1, "decoder_num_heads": 2}


def tiny_overrides(**extra: object) -> dict:
    """Dotted overrides on top of the tiny-camae preset, for fast deterministic CPU runs."""
    base = {
        "model.kwargs": dict(TINY_MODEL),
        "data.batch_size": 8,
        "data.num_workers": 0,
        "trainer.precision": "fp32",
        "trainer.progress_bar": False,
        "logging.tensorboard": False,
        "logging.recon_every_n_steps": 0,
        "schedule.warmup_steps": 2,
    }
    base.update(extra)
    return base


def override_args(overrides: dict) -> list[str]:
    """The same overrides as command-line KEY=VALUE strings."""
    import yaml

    out = []
    for k, v in overrides.items():
        text = yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
        out.append(f"{k}={text}")
    return out


def set_options(overrides: dict) -> list[str]:
    """The same overrides as ``--set KEY=VALUE`` options of `cellmae train`."""
    return [a for o in override_args(overrides) for a in ("--set", o)]


@pytest.fixture(scope="session")
def sim_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards of the tiny simulated screen: 44 fields x 4 random 32px crops, 6 channels."""
    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards
    from cellmae.data.simulate import simulate_screen

    root = tmp_path_factory.mktemp("sim")
    screen = open_screen(simulate_screen(root / "screen", "tiny", seed=0))
    build_shards(screen, root / "shards", crop_size=32, crops_per_field=4, seed=0, progress=False)
    return root / "shards"
