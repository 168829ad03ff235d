"""Short CPU runs: the loss goes down on simulated and real crops; the run folder follows the contract."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from cellmae.train.run import run_training

from .conftest import tiny_overrides


def _loss_drop(metrics: pd.DataFrame, k: int = 3) -> tuple[float, float]:
    return float(metrics["loss"].head(k).mean()), float(metrics["loss"].tail(k).mean())


def test_tiny_camae_learns_on_the_simulated_screen(sim_shards: Path, tmp_path: Path) -> None:
    out = run_training("tiny-camae", sim_shards, tmp_path / "train" / "camae",
                       overrides=tiny_overrides(**{"trainer.max_steps": 16, "checkpoint.every_n_steps": 8,
                                                   "logging.recon_every_n_steps": 8, "logging.tensorboard": True}))
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].tolist() == list(range(1, 17))
    assert {"step", "epoch", "loss", "lr", "crops_per_s", "elapsed_s"} <= set(m.columns)
    first, last = _loss_drop(m)
    assert last < 0.75 * first, f"loss did not fall clearly: {first:.3f} -> {last:.3f}"
    assert (m["crops_per_s"] > 0).all()
    # warm-up then cosine decay: lr peaks at step 2 and ends near zero
    assert m["lr"].idxmax() in (1, 2) and m["lr"].iloc[-1] < 0.1 * m["lr"].max()

    # contract outputs: final weights that the models package reloads, resumable state, figures, logs
    from cellmae.models import from_pretrained

    model = from_pretrained(out)
    assert model.num_blocks == 2
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["steps"] == 16
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "step000016.ckpt").is_file()
    assert sorted(p.name for p in (out / "recon").glob("*.png")) == ["step_000008.png", "step_000016.png"]
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "train_config.yaml").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["crops_seen"] == 16 * 8
    # the checkpoint is plain data: weights_only loading works
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 16 and ckpt["optimizer_states"]


def test_tiny_camae_learns_on_real_example_fly_crops(example_fly_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich drops progress columns that do not fit the terminal
    # composed as `cellmae train SCREEN` does: shards (32 random 32px crops per field) into OUT/shards, then training
    from cellmae.data.training_shards import ensure_shards
    from cellmae.train.config import load_config
    from cellmae.train.run import training_crop_size

    cfg = load_config("tiny-camae", tiny_overrides(**{"trainer.max_steps": 16, "checkpoint.every_n_steps": 100,
                                                      "data.crops_per_field": 32, "trainer.progress_bar": True}))
    shards = ensure_shards(example_fly_dir, tmp_path / "fly" / "shards", crop_size=training_crop_size(cfg),
                           crops_per_field=cfg.data.crops_per_field, seed=cfg.seed, progress=False)
    out = run_training(cfg, shards, tmp_path / "fly")
    shown = capsys.readouterr().out
    assert "crops/s" in shown and "loss" in shown  # the rich progress bar with throughput
    m = pd.read_csv(out / "metrics.csv")
    first, last = _loss_drop(m)
    assert last < 0.75 * first, f"loss did not fall clearly on ExampleFly: {first:.3f} -> {last:.3f}"
    from cellmae.models.checkpoint import read_config

    assert read_config(out)["train"]["shards"] == str(out / "shards")
    from cellmae.data.shards import read_shard_info

    info = read_shard_info(out / "shards")
    assert info["channels"] == ["DNA", "FITC", "Rhodamine"] and info["crop_size"] == 32
    assert info["crops_written"] == 3 * 32


def test_wsl_classifier_trains_with_labels_from_the_shards(sim_shards: Path, tmp_path: Path) -> None:
    out = run_training("tiny-wsl", sim_shards, tmp_path / "wsl",
                       overrides={"data.batch_size": 8, "data.num_workers": 0, "trainer.max_steps": 6,
                                  "model.kwargs": {"img_size": 32}, "trainer.progress_bar": False,
                                  "logging.tensorboard": False, "trainer.precision": "fp32"})
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 6 and m["accuracy"].between(0, 1).all() and m["loss"].notna().all()
    meta = json.loads((out / "config.json").read_text())
    crops = pd.read_parquet(sim_shards / "crops.parquet")
    assert meta["classes"] == sorted(crops["Metadata_Perturbation"].astype(str).unique())
    assert meta["config"]["num_classes"] == len(meta["classes"])
    assert "6 optimizer steps" in (out / "README.md").read_text()  # the model card travels with the weights


def test_nonfinite_loss_stops_with_step_and_batch_named(sim_shards: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from cellmae.train.module_base import NonFiniteLossError
    from cellmae.train.module_mae import MAEPretrainModule

    original = MAEPretrainModule.compute_loss

    def poisoned(self, batch, seed):  # the loss of optimizer step 3 is NaN
        loss, extra = original(self, batch, seed)
        return (loss * float("nan"), extra) if self.global_step == 2 else (loss, extra)

    monkeypatch.setattr(MAEPretrainModule, "compute_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 3 .*batch 2.*crops SIM-\d+/\d+/[A-P]\d+") as err:
        run_training("tiny-camae", sim_shards, out, overrides=tiny_overrides(**{"trainer.max_steps": 6}))
    assert "last.ckpt" in str(err.value)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # the state before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert pd.read_csv(out / "metrics.csv")["step"].tolist() == [1, 2]
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("preset", ["tiny-mae", "tiny-cnnmae"])
def test_other_tiny_presets_train(preset: str, sim_shards: Path, tmp_path: Path) -> None:
    out = run_training(preset, sim_shards, tmp_path / preset,
                       overrides=tiny_overrides(**{"model.kwargs": {"img_size": 32}, "trainer.max_steps": 3}))
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].tolist() == [1, 2, 3] and m["loss"].notna().all()
    from cellmae.models import from_pretrained

    model = from_pretrained(out)
    # fixed-channel models were built for the shard set's channels
    assert model.expected_channels == ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM")
