"""Model cards written by save_pretrained, push_to_hub (against a stand-in for the hub client), and
the openphenom row of `cellmae models`."""

from __future__ import annotations

import json

import huggingface_hub
import torch
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.models import create_model, from_pretrained, push_to_hub, save_pretrained

from .conftest import SMALL


def test_save_pretrained_writes_a_model_card_with_training_and_metrics(tmp_path):
    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", **SMALL)
    extra = {"train": {"steps": 1234, "epochs": 3, "shards": "RUN/shards/demo",
                       "train_config": {"data": {"fraction": 0.5}}},
             "metrics": {"recall_0.05_0.95": 0.2614, "map_activity_fraction": 0.5}}
    save_pretrained(model, tmp_path / "m", extra=extra)
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: cellmae\n")
    assert "`camae_vit_tiny_patch8_64` with decoder_depth, decoder_embed_dim, depth, embed_dim changed" in card
    assert "| blocks x width | 3 x 96 |" in card and "any 1..11 named channels" in card
    assert "`RUN/shards/demo` (0.5 of it)" in card and "1234 optimizer steps (3 epochs)" in card
    assert "| recall_0.05_0.95 | 0.2614 |" in card
    assert from_pretrained(tmp_path / "m").num_blocks == 3  # the card does not disturb loading


def test_push_to_hub_uploads_weights_config_and_card(tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw["exist_ok"]))

        def upload_folder(self, *, repo_id, folder_path, allow_patterns, **kw):
            from pathlib import Path

            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, files, sorted(allow_patterns)))
            return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = create_model("camae_vit_tiny_patch8_64", **SMALL)
    url = push_to_hub(model, "me/tiny", token="t0k")
    assert url == "https://hub.invalid/me/tiny/commit/1"
    assert calls[0] == ("init", "t0k") and calls[1] == ("create_repo", "me/tiny", True)
    assert calls[2][2] == ["README.md", "config.json", "model.safetensors"]
    assert calls[2][3] == ["README.md", "config.json", "model.safetensors"]


def test_cellmae_models_lists_openphenom():
    res = CliRunner().invoke(app, ["models", "--family", "mae", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in map(json.loads, res.output.strip().splitlines())}
    row = rows["openphenom"]
    assert row["source"] == "hf:recursionpharma/OpenPhenom" and row["preset"] == "camae_vit_small_patch16_256"
    assert row["channels"] == "any (<= 11)" and row["img_size"] == 256 and row["patch_size"] == 16
    assert 22.4e6 > row["encoder_params"] > 21e6 and row["params"] > row["encoder_params"]
    assert rows["camae_vit_tiny_patch8_64"]["source"] == "preset"
    assert "openphenom" not in CliRunner().invoke(app, ["models", "--family", "wsl", "--json"]).output
