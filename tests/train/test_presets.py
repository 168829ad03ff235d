"""The bundled training presets follow the published recipes, and weight decay hits exactly the
transform weights of each preset (lists written out here, independent of the optimizer code)."""

from __future__ import annotations

import pytest
import torch

from cellmae.train.config import PRESET_DIR, list_presets, load_config
from cellmae.train.optim import (
    create_optimizer,
    decayed_parameter_names,
    effective_lr,
    no_decay_parameter_names,
)
from cellmae.train.run import build_model
from cellmae.train.schedules import create_scheduler

PAPER_PRESETS = {
    # preset: (model, absolute peak lr, stochastic depth, source named in the file)
    "vits16-camae": ("camae_vit_small_patch16_256", 1e-4, 0.1, "Kraus et al., CVPR 2024"),
    "vitl8-mae": ("mae_vit_large_patch8_256", 3e-5, 0.3, "Kenyon-Dean et al., ICML 2025"),
    "vitg8-mae": ("mae_vit_gigantic_patch8_256", 3e-5, 0.6, "Kenyon-Dean et al., ICML 2025"),
    "vitl8-camae": ("camae_vit_large_patch8_256", 3e-5, 0.3, "Kraus et al., CVPR 2024"),
}


def _meta_model(preset: str) -> torch.nn.Module:
    cfg = load_config(preset)
    with torch.device("meta"):
        return build_model(cfg, channels=("DNA", "ER", "RNA"), num_classes=3 if cfg.task == "wsl" else None)


@pytest.mark.parametrize("preset", sorted(PAPER_PRESETS))
def test_paper_presets_use_the_published_recipe(preset: str) -> None:
    model_name, lr, drop_path, source = PAPER_PRESETS[preset]
    cfg = load_config(preset)
    assert cfg.model.name == model_name and cfg.model.mask_ratio == 0.75
    o, s = cfg.optim, cfg.schedule
    assert (o.name, o.lr, o.betas, o.weight_decay, o.scale_lr_with_batch) == ("lion", lr, [0.9, 0.95], 0.05, False)
    assert (s.name, s.warmup_fraction, s.warmup_steps) == ("onecycle", 0.1, None)
    for global_batch in (256, 2048, 16384):  # absolute: no silent batch scaling
        assert effective_lr(o, global_batch) == lr
    model = _meta_model(preset)
    assert model.config["fourier_weight"] == 0.01 and model.config["drop_path_rate"] == drop_path
    text = (PRESET_DIR / f"{preset}.yaml").read_text()
    assert "Source:" in text and source in text


def test_batch_scaling_only_when_asked() -> None:
    cfg = load_config("vits16-camae", ["optim.scale_lr_with_batch=true"])
    assert effective_lr(cfg.optim, 2048) == pytest.approx(8e-4)


def test_vitg8_mae_architecture_is_the_papers() -> None:
    model = _meta_model("vitg8-mae")
    enc = model.encoder
    assert len(enc.blocks) == 48 and model.embed_dim == 1664
    assert enc.blocks[0].mlp_out_proj.weight.shape == (1664, 8192)
    assert model.config["tokenizer"] == "standard"


def test_onecycle_with_ten_percent_warmup_peaks_at_the_published_lr() -> None:
    cfg = load_config("vitl8-mae")
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = create_optimizer([{"params": [p], "weight_decay": 0.0}], cfg.optim, effective_lr(cfg.optim, 4096))
    sched = create_scheduler(opt, cfg.schedule, 1000)
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(1000), key=lrs.__getitem__)
    assert 98 <= peak <= 101 and lrs[peak] == pytest.approx(3e-5, rel=1e-4)
    assert lrs[0] == pytest.approx(3e-5 / 25) and lrs[-1] < 3e-5 / 1e4


# ------------------------------------------------------------------ weight decay by parameter identity

def _vit_encoder(depth: int, parallel: bool) -> list[str]:
    per_block = ("in_proj", "attn_out_proj", "mlp_out_proj") if parallel else ("attn.qkv", "attn.proj",
                                                                               "mlp.fc1", "mlp.fc2")
    return ["encoder.tokenizer.patch_embed.proj.weight",
            *[f"encoder.blocks.{i}.{w}.weight" for i in range(depth) for w in per_block],
            "encoder_decoder_proj.weight"]


def _timm_blocks(prefix: str, depth: int) -> list[str]:
    return [f"{prefix}.{i}.{w}.weight" for i in range(depth) for w in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]


def _camae_decoder(stacks: int, depth: int) -> list[str]:
    cross = [f"decoder.cross_attention.{w}.weight" for w in ("q", "kv", "proj")]
    blocks = [n for s in range(stacks) for n in _timm_blocks(f"decoder.decoders.{s}", depth)]
    return [*cross, "decoder.mlp.fc1.weight", "decoder.mlp.fc2.weight", *blocks, "decoder_pred.weight"]


def _mae_decoder(depth: int) -> list[str]:
    return [*_timm_blocks("decoder.blocks", depth), "decoder_pred.weight"]


_CNN_MAE_TINY = [
    "stem.0.weight",
    *[f"stages.{s}.1.{w}.weight" for s in range(3) for w in ("conv_dw", "mlp.fc1", "mlp.fc2")],
    "stages.1.0.1.weight", "stages.2.0.1.weight",  # downsampling convs
    *[f"ups.{u}.{w}.weight" for u in range(2) for w in ("up", "fuse", "block.conv_dw", "block.mlp.fc1", "block.mlp.fc2")],
    "head.weight",
]
_CONVNEXT_TEST = [  # timm test_convnext: depths (1, 2, 4, 2), downsampling conv before stages 1-3
    "backbone.stem.0.weight",
    *[f"backbone.stages.{s}.downsample.1.weight" for s in (1, 2, 3)],
    *[f"backbone.stages.{s}.blocks.{b}.{w}.weight" for s, n in enumerate((1, 2, 4, 2)) for b in range(n)
      for w in ("conv_dw", "mlp.fc1", "mlp.fc2")],
    "head.weight",
]
DECAYED = {
    "tiny-camae": [*_vit_encoder(4, True), *_camae_decoder(1, 2)],
    "demo-camae": [*_vit_encoder(4, True), *_camae_decoder(1, 2)],
    "tiny-mae": [*_vit_encoder(4, False), *_mae_decoder(2)],
    "tiny-cnnmae": _CNN_MAE_TINY,
    "tiny-wsl": _CONVNEXT_TEST,
    # OpenPhenom decoder: one 8-block stack per channel slot (6 slots)
    "vits16-camae": [*_vit_encoder(12, True), *_camae_decoder(6, 8)],
    "vitl8-camae": [*_vit_encoder(24, True), *_camae_decoder(1, 8)],
    "vitl8-mae": [*_vit_encoder(24, True), *_mae_decoder(8)],
    "vitg8-mae": [*_vit_encoder(48, True), *_mae_decoder(8)],
}


def test_every_bundled_preset_has_a_decay_list() -> None:
    assert set(DECAYED) == set(list_presets())


@pytest.mark.parametrize("preset", sorted(DECAYED))
def test_decayed_tensors_of_each_preset(preset: str) -> None:
    model = _meta_model(preset)
    decayed = decayed_parameter_names(model)
    assert len(decayed) == len(set(decayed))
    assert set(decayed) == set(DECAYED[preset])
    # everything else (norms, biases, LayerScale, tokens, channel/modality tokens) is not decayed
    names = {n for n, _ in model.named_parameters()}
    assert no_decay_parameter_names(model) == names - set(decayed)


def test_tokens_in_parameter_lists_are_not_decayed() -> None:
    model = _meta_model("vits16-camae")
    skip = no_decay_parameter_names(model)
    tokens = [n for n, _ in model.named_parameters() if n.startswith("decoder.modality_tokens.")]
    assert len(tokens) == 6 and set(tokens) <= skip
    assert {"encoder.cls_token", "decoder.mask_token"} <= skip


def test_no_weight_decay_hook_and_attention_projections() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(8, 2)
            self.head = torch.nn.Linear(8, 2)
            self.table = torch.nn.Parameter(torch.zeros(4, 8))  # a raw 2-D tensor is a lookup, not a transform

        def no_weight_decay(self) -> set[str]:
            return {"head.weight"}

    assert set(decayed_parameter_names(Net())) == {"attn.in_proj_weight", "attn.out_proj.weight"}
