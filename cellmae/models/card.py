"""Model cards (README.md beside config.json) and publishing a saved model to the Hugging Face Hub.

``save_pretrained`` writes the card from what it knows: the architecture (from the model), and, when
the caller passes them in ``extra``, the training data and steps (``extra["train"]``, as ``cellmae
train`` does) and benchmark metrics (``extra["metrics"]``: name -> value). The card's YAML header is
the hub's model-card metadata, so a pushed folder is listed as a cellmae feature extractor.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cellmae.layout import MODEL_CARD_FILE, MODEL_FILES


def _params(model: Any) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    encoder = getattr(model, "encoder", None)
    return total, (sum(p.numel() for p in encoder.parameters()) if encoder is not None else total)


def _preset_text(preset: str | None, cfg: dict[str, Any]) -> str:
    from cellmae.models.registry import PRESETS

    if not preset:
        return "custom config (see config.json)"
    changed = sorted(k for k, v in PRESETS.get(preset, {}).items() if cfg.get(k) != v)
    return f"`{preset}`" + (f" with {', '.join(changed)} changed (see config.json)" if changed else "")


def model_card(model: Any, meta: dict[str, Any], *, name: str | None = None) -> str:
    """The README.md text for a saved model (``meta`` is what config.json holds)."""
    cfg = model.config
    title = name or meta.get("preset") or cfg.get("family", "cellmae model")
    total, encoder = _params(model)
    channels = model.expected_channels
    rows = [
        ("preset", _preset_text(meta.get("preset"), cfg)),
        ("family", cfg.get("family")),
        ("parameters", f"{total / 1e6:.1f}M (encoder {encoder / 1e6:.1f}M)"),
        ("input", f"uint8 (B, C, {cfg.get('img_size')}, {cfg.get('img_size')}), self-standardized per image and channel"),
        ("channels", f"any 1..{cfg.get('max_channels')} named channels, any order (channel-agnostic)"
         if channels is None else f"exactly {list(channels)}, in that order"),
        ("blocks x width", f"{model.num_blocks} x {model.embed_dim}"),
    ]
    for key in ("patch_size", "tokenizer", "block", "decoder", "decoder_depth", "decoder_embed_dim", "mask_ratio"):
        if key in cfg:
            rows.append((key, cfg[key]))
    train = meta.get("train") or {}
    data = (train.get("train_config") or {}).get("data") or {}
    lines = [
        "---", "library_name: cellmae", "pipeline_tag: image-feature-extraction",
        "tags: [cellmae, microscopy, cell-painting, masked-autoencoder]", "---", "",
        f"# {title}", "",
        f"A cellmae {cfg.get('family')} model saved by cellmae {meta.get('cellmae_version')}.", "",
        "## Architecture", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
        "## Training data", "",
    ]
    if train.get("shards"):
        lines.append(f"Crops from the shard set `{train['shards']}`"
                     + (f" ({data.get('fraction', 1.0):g} of it)" if data else "") + ".")
    else:
        lines.append("Not recorded (the model was not saved by `cellmae train`).")
    lines += ["", "## Training", ""]
    if train.get("steps") is not None:
        lines.append(f"{train['steps']} optimizer steps ({train.get('epochs', '?')} epochs).")
    else:
        lines.append("Not recorded.")
    metrics = meta.get("metrics") or {}
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                       for k, v in metrics.items()]]
    else:
        lines.append("None recorded; run `cellmae bench` on its embeddings.")
    lines += [
        "", "## Use", "", "```python", "import cellmae", "",
        'model = cellmae.load_model("hf:ORG/NAME")  # or the folder this card is in',
        'vectors = model.embed(images_uint8, channels=["DNA", "ER", "RNA", "AGP", "Mito"])  # (B, D)',
        "```", "",
        "Command line: `cellmae embed SCREEN --model hf:ORG/NAME --out RUN/embed/NAME`.", "",
    ]
    return "\n".join(lines)


def write_model_card(model: Any, directory: str | os.PathLike, meta: dict[str, Any]) -> Path:
    path = Path(directory) / MODEL_CARD_FILE
    path.write_text(model_card(model, meta))
    return path


def push_to_hub(
    model: Any, repo_id: str, *, token: str | None = None, private: bool | None = None,
    commit_message: str = "Upload cellmae model", revision: str | None = None,
) -> str:
    """Publish a model (or a ``save_pretrained`` folder) to the Hugging Face Hub as config.json +
    model.safetensors + README.md; returns the commit URL. Needs a token (``hf auth login``).

    Others then load it with ``cellmae.load_model("hf:" + repo_id)`` or ``--model hf:REPO``.
    """
    from huggingface_hub import HfApi

    from cellmae.layout import MODEL_CONFIG_FILE
    from cellmae.models.checkpoint import FORMAT, save_pretrained

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cellmae-push-") as tmp:
        if isinstance(model, str | os.PathLike):
            folder = Path(model)
            meta = json.loads((folder / MODEL_CONFIG_FILE).read_text()) if (folder / MODEL_CONFIG_FILE).is_file() else {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{folder}: not a save_pretrained() folder (no cellmae config.json); save the model first")
        else:
            folder = save_pretrained(model, Path(tmp) / "model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message, allow_patterns=MODEL_FILES)
    return str(getattr(info, "commit_url", info))
