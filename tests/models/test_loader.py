"""``cellmae.models.load``: the published OpenPhenom folder by every route, equal to the reference embedding.

The folder is written here the way users download it: ``model.safetensors`` that is really a torch zip
of ``{"state_dict": ...}`` in the maes_microscopy key layout, next to the published kind of
``config.json`` (whose decoder numbers need not match the file). The ``hf:`` route goes through
huggingface_hub's real code, offline, on a cache laid out as the hub lays it out.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from cellmae.models import create_model, load, load_openphenom
from cellmae.models.weights_io import SAFETENSORS, TORCH_ZIP, sniff_format

from .conftest import uint8_images
from .test_openphenom import TINY_PHENOM, openphenom_layout

REPO = Path(__file__).resolve().parents[2]
ENC = "encoder.vit_backbone."
CELLPAINTING = ("DNA", "ER", "RNA", "AGP", "Mito")
RXRX = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM")


def published_config(depth: int, dim: int, heads: int) -> dict:
    """config.json as the public folder has it (Hugging Face MAEModel + hydra targets), decoder numbers given."""
    return {
        "architectures": ["MAEModel"], "model_type": "MAE", "mask_ratio": 0.75, "norm_pix_loss": False,
        "fourier_loss_weight": 0.0, "crop_size": -1,
        "decoder": {"_target_": "mae_modules.CAMAEDecoder", "depth": depth, "embed_dim": dim, "mlp_ratio": 4,
                    "num_heads": heads, "num_modalities": 6, "qkv_bias": True, "tokens_per_modality": 256},
        "encoder": {"_target_": "mae_modules.MAEEncoder", "channel_agnostic": True, "max_in_chans": 11,
                    "vit_backbone": {"_target_": "vit.sincos_positional_encoding_vit",
                                     "vit_backbone": {"_target_": "vit.vit_small_patch16_256", "global_pool": "avg"}}},
    }


def phenom_state(**overrides) -> dict[str, torch.Tensor]:
    """A tiny OpenPhenom-architecture model in the published layout, with block weights that matter
    (LayerScale and MLP biases moved off their near-zero initial values)."""
    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", **{**TINY_PHENOM, **overrides})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ls.gamma", "mlp_bias", "cls_token")):
                p.normal_(0.0, 0.5)
    return openphenom_layout(model)


def reference_embedding(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """OpenPhenom's embedding, written from its description: per image and channel instance-normalised
    pixels; every channel patchified by the same 1-channel patch embedding plus the fixed position table;
    a class token; the parallel (attention + MLP from one fused input projection, qk-LayerNorm,
    LayerScale) blocks; then the mean of the last block's patch tokens, with no final norm."""
    w = state[f"{ENC}patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    x = images.double() / 255.0
    x = (x - x.mean((-2, -1), keepdim=True)) / torch.sqrt(x.var((-2, -1), unbiased=False, keepdim=True) + 1e-5)
    b, c = x.shape[:2]
    st = {k: v.double() for k, v in state.items()}
    per_channel = F.conv2d(x.reshape(b * c, 1, *x.shape[-2:]), st[f"{ENC}patch_embed.proj.weight"],
                           st[f"{ENC}patch_embed.proj.bias"], stride=patch)
    n = per_channel.shape[-1] * per_channel.shape[-2]
    tok = per_channel.flatten(2).transpose(1, 2).reshape(b, c * n, dim)
    pos = st[f"{ENC}pos_embed"][0]
    tok = tok + pos[1 : 1 + c * n]
    h = torch.cat([st[f"{ENC}cls_token"].expand(b, 1, dim) + pos[:1], tok], dim=1)
    depth = len({k.split(".")[3] for k in state if k.startswith(f"{ENC}blocks.")})
    for i in range(depth):
        p = {k[len(f"{ENC}blocks.{i}.") :]: v for k, v in st.items() if k.startswith(f"{ENC}blocks.{i}.")}
        head_dim = p["q_norm.weight"].shape[0]
        heads = dim // head_dim
        y = F.layer_norm(h, (dim,), p["in_norm.weight"], p["in_norm.bias"], eps=1e-6) @ p["in_proj.weight"].T
        hidden = p["mlp_bias"].shape[0]
        mlp, q, k, v = torch.split(y, [hidden, dim, dim, dim], dim=-1)
        q, k, v = (t.reshape(b, -1, heads, head_dim) for t in (q, k, v))
        q = F.layer_norm(q, (head_dim,), p["q_norm.weight"], p["q_norm.bias"], eps=1e-6)
        k = F.layer_norm(k, (head_dim,), p["k_norm.weight"], p["k_norm.bias"], eps=1e-6)
        attn = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / head_dim**0.5, dim=-1)
        a = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, -1, dim)
        out = a @ p["attn_out_proj.weight"].T + p["attn_out_proj.bias"]
        out = out + F.gelu(mlp + p["mlp_bias"]) @ p["mlp_out_proj.weight"].T + p["mlp_out_proj.bias"]
        h = h + p["ls.gamma"] * out
    return h[:, 1:].mean(dim=1).float()


def assert_reference(emb: torch.Tensor, ref: torch.Tensor) -> None:
    assert emb.shape == ref.shape and emb.dtype == torch.float32
    rel = float((emb - ref).norm() / ref.norm())
    assert rel < 1e-5, rel


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The public folder: model.safetensors (a torch zip) + config.json that names another decoder."""
    folder = tmp_path_factory.mktemp("OpenPhenom")
    state = phenom_state()
    torch.save({"state_dict": state}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(published_config(depth=4, dim=256, heads=4), indent=2))
    return folder, state


def test_published_file_is_sniffed_as_a_torch_zip_and_torch_alone_would_misread_it(published):
    folder, _ = published
    assert sniff_format(folder / "model.safetensors") == TORCH_ZIP
    try:  # torch >= 2.14 sends a path ending in .safetensors to the safetensors reader: the reported bug
        torch.load(folder / "model.safetensors", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whichever reader error this torch raises
        assert "header" in str(err).lower()


@pytest.mark.parametrize("route", ["openphenom:FILE", "FILE", "FOLDER", "openphenom:FOLDER"])
@pytest.mark.parametrize("channels", [RXRX, CELLPAINTING], ids=["6ch", "5ch"])
def test_every_local_route_gives_the_reference_embedding(published, route, channels):
    folder, state = published
    target = folder if route.endswith("FOLDER") else folder / "model.safetensors"
    spec = f"openphenom:{target}" if route.startswith("openphenom:") else str(target)
    model = load(spec)
    x = uint8_images(3, len(channels), seed=len(channels))
    assert_reference(model.embed(x, channels=list(channels)), reference_embedding(state, x))
    feats = model.forward_features(x, channels=list(channels), blocks="last")
    torch.testing.assert_close(feats[3], model.embed(x, channels=list(channels)))
    info = model.source_info
    assert info.kind == "openphenom" and Path(info.weights) == folder / "model.safetensors"
    # the decoder is built from the file's shapes (1 x 64, 3 stacks), not from config.json's 4 x 256
    assert (model.config["decoder_depth"], model.config["decoder_embed_dim"]) == (1, 64)
    assert model.config["decoder_num_heads"] == 4 and model.config["decoder_separate_channel_blocks"]
    assert info.found["decoder_loaded"] and "config.json says decoder 4 x 256" in info.found["config_json"]


def _fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> str:
    """models--ORG--NAME/{blobs, snapshots/<commit>, refs/main} as huggingface_hub writes them."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "refs").mkdir()
    for name, data in files.items():
        # LFS files are stored under their sha256, small git files under their git blob sha1
        blob = hashlib.sha256(data).hexdigest() if name.endswith(".safetensors") else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (root / "blobs" / blob).write_bytes(data)
        os.symlink(Path("..", "..", "blobs", blob), root / "snapshots" / commit / name)
    (root / "refs" / "main").write_text(commit)
    return commit


_HUB_SCRIPT = """
import json, sys, torch
from cellmae.models import load
x = torch.load(sys.argv[1])
out = {}
for spec in sys.argv[2:-1]:
    m = load(spec)
    out[spec] = {"emb6": m.embed(x[:, :6], channels=["DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM"]).tolist(),
                 "emb5": m.embed(x[:, :5], channels=["DNA", "ER", "RNA", "AGP", "Mito"]).tolist(),
                 "kind": m.source_info.kind, "weights": m.source_info.weights}
try:
    load(sys.argv[-1])
except ValueError as err:
    out["missing"] = str(err)
print(json.dumps(out))
"""


def test_hf_route_loads_offline_from_the_hub_cache(published, tmp_path):
    folder, state = published
    cache = tmp_path / "hf" / "hub"
    files = {n: (folder / n).read_bytes() for n in ("model.safetensors", "config.json")}
    commit = _fake_hub_cache(cache, "recursionpharma/OpenPhenom", files)
    x = uint8_images(2, 6, seed=7)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    specs = ["hf:recursionpharma/OpenPhenom", f"hf:recursionpharma/OpenPhenom@{commit}", "hf:nobody/NotCached"]
    proc = subprocess.run([sys.executable, "-c", _HUB_SCRIPT, str(tmp_path / "x.pt"), *specs],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for spec in specs[:2]:
        assert out[spec]["kind"] == "openphenom"
        assert Path(out[spec]["weights"]).parent.name == commit  # the snapshot folder of the cache
        assert_reference(torch.tensor(out[spec]["emb6"]), reference_embedding(state, x[:, :6]))
        assert_reference(torch.tensor(out[spec]["emb5"]), reference_embedding(state, x[:, :5]))
    assert "hf:nobody/NotCached: not in the local Hugging Face cache" in out["missing"]
    assert "\n" not in out["missing"]


def test_content_not_suffix_decides(tmp_path):
    state = phenom_state()
    st = tmp_path / "weights.pth"  # a real safetensors file under a torch-looking name
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    assert sniff_format(st) == SAFETENSORS
    zipped = tmp_path / "phenom.safetensors"  # and a torch zip under a safetensors name, without config.json
    torch.save({"state_dict": state}, zipped)
    x = uint8_images(2, 4, seed=3)
    ref = reference_embedding(state, x)
    for path in (st, zipped):
        assert_reference(load(str(path)).embed(x, channels=["DNA", "ER", "RNA", "Mito"]), ref)
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"not weights at all")
    with pytest.raises(ValueError, match="not a weights file"):
        load(str(junk))


def test_decoder_shapes_come_from_the_file(tmp_path):
    """8x512 vs 4x256 in the public configs: whatever the file holds is built and loaded strictly."""
    state = phenom_state(decoder_depth=2, decoder_embed_dim=32, decoder_channel_slots=4,
                         decoder_separate_channel_blocks=False)
    torch.save({"state_dict": state}, tmp_path / "model.safetensors")
    model = load_openphenom(tmp_path / "model.safetensors")  # strict; no config.json: default heads
    cfg = model.config
    assert (cfg["decoder_depth"], cfg["decoder_embed_dim"], cfg["decoder_channel_slots"]) == (2, 32, 4)
    assert not cfg["decoder_separate_channel_blocks"] and model.load_report["decoder_loaded"]
    assert "2 blocks x 32, 1 stack(s), 4 channel slots" in model.load_report["decoder"]
    assert (cfg["img_size"], cfg["patch_size"], cfg["max_channels"], cfg["num_heads"]) == (64, 8, 11, 3)


def test_a_decoder_mismatch_never_stops_embedding_but_the_encoder_stays_strict(tmp_path):
    state = phenom_state()
    del state["decoder.cross_attention.q.weight"]
    state["decoder_pred.bias"] = torch.zeros(3)
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="decoder.cross_attention.q.weight"):
        load_openphenom(path)  # the full model is still strict
    model = load(str(path))
    assert not model.source_info.found["decoder_loaded"]
    assert "decoder_pred.bias" in model.source_info.found["decoder_problem"]
    x = uint8_images(2, 6, seed=1)
    assert_reference(model.embed(x, channels=list(RXRX)), reference_embedding(state, x))
    del state[f"{ENC}blocks.1.in_proj.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"missing keys \(1\).*encoder.blocks.1.in_proj.weight"):
        load(str(path))


class _Payload:
    """Any non-tensor object: weights-only loading must refuse it."""


def test_code_in_the_pickle_is_refused_without_suggesting_to_unpickle_it(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": phenom_state(), "hook": _Payload()}, path)
    with pytest.raises(ValueError, match="_Payload") as err:
        load(str(path))
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_other_sources_answer_the_same_interface(tmp_path):
    from cellmae.models import save_pretrained

    torch.manual_seed(0)
    trained = create_model("camae_vit_tiny_patch8_64", depth=2, embed_dim=64, num_heads=2, decoder_depth=1)
    save_pretrained(trained, tmp_path / "ckpt")
    x = uint8_images(2, 3, seed=5)
    names = ["DNA", "ER", "RNA"]
    for spec in (str(tmp_path / "ckpt"), str(tmp_path / "ckpt" / "model.safetensors")):
        m = load(spec)
        assert m.source_info.kind == "cellmae"
        torch.testing.assert_close(m.embed(x, channels=names), trained.eval().embed(x, channels=names))
    rnd = load(f"random-init:{tmp_path / 'ckpt'}", seed=1)
    assert rnd.source_info.kind == "random-init" and rnd.embed(x, channels=names).shape == (2, 64)
    timm_model = load("timm:resnet18", channels=names, tile=64)
    assert timm_model.embed(x, channels=names).shape == (2, 512)
    hand = load("handcrafted")
    feats = hand.embed(x, channels=names)
    assert feats.shape == (2, len(hand.feature_names(names)))
    with pytest.raises(ValueError, match="neither a checkpoint path nor a known name"):
        load("no_such_model_anywhere")
    with pytest.raises(ValueError, match="expected hf:ORG/NAME"):
        load("hf:just-a-name")


def test_cellmae_embed_takes_the_published_file(published, tmp_path):
    """The reported failure: `cellmae embed SCREEN --model openphenom:.../model.safetensors`."""
    from typer.testing import CliRunner

    from cellmae.cli import app
    from cellmae.data.simulate import simulate_screen
    from cellmae.embed import read_embeddings

    folder, _ = published
    screen = simulate_screen(tmp_path / "screen", preset="tiny", n_experiments=1, n_genes=2, n_compounds=0,
                             controls_per_plate=2)
    out = tmp_path / "embed" / "openphenom"
    res = CliRunner().invoke(app, ["embed", str(screen), "--model", f"openphenom:{folder / 'model.safetensors'}",
                                   "--out", str(out), "--num-workers", "0", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    table = read_embeddings(out / "block03")
    assert table.filter(like="feature_").shape[1] == 96 and len(table) > 0
    config = json.loads((out / "embed_config.json").read_text())
    assert config["source"]["kind"] == "openphenom" and config["tile"] == 64


@pytest.mark.parametrize("depth,width", [(8, 512), (4, 256)])
def test_the_published_architecture_is_read_from_its_shapes(depth, width):
    """The full ViT-S/16 layout (on the meta device: shapes only) gives back the OpenPhenom preset,
    with whichever decoder the file holds; config.json's disagreement is reported."""
    from cellmae.models import PRESETS
    from cellmae.models.openphenom import infer_config

    with torch.device("meta"):
        state = openphenom_layout(create_model("camae_vit_small_patch16_256", decoder_depth=depth, decoder_embed_dim=width))
    config, found = infer_config(state, published_config(depth=4, dim=256, heads=16))
    preset = {**PRESETS["camae_vit_small_patch16_256"], "decoder_depth": depth, "decoder_embed_dim": width}
    assert {k: config[k] for k in preset if k != "drop_path_rate"} == {k: v for k, v in preset.items() if k != "drop_path_rate"}
    assert ("config_json" in found) == ((depth, width) != (4, 256))
    assert found["encoder"] == "ViT 384x12 blocks, patch 16, 256px, up to 11 channels"
