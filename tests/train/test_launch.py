"""Launch helpers: gradient checkpointing is exact and keeps state-dict keys; atomic checkpoint IO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellmae.train.checkpointing import AtomicCheckpointIO, find_resume_checkpoint
from cellmae.train.launch import enable_grad_checkpointing, transformer_block_classes

CHANNELS = ("DNA", "ER", "RNA")


def _grads(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(x, channels=CHANNELS, mask_seed=3)
    out["loss"].backward()
    return float(out["loss"].detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_checkpointing_gives_the_same_loss_and_gradients() -> None:
    from cellmae.models import create_model

    torch.manual_seed(0)
    model = create_model("camae_vit_tiny_patch8_64", depth=2, embed_dim=64, num_heads=2, img_size=32)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    keys = list(model.state_dict())
    loss_a, grads_a = _grads(model, x)
    assert transformer_block_classes(model)
    enable_grad_checkpointing(model)
    assert any("checkpoint" in type(m).__name__.lower() for m in model.modules())
    assert list(model.state_dict()) == keys  # checkpoints and save_pretrained see the plain names
    loss_b, grads_b = _grads(model, x)
    assert loss_b == pytest.approx(loss_a, rel=1e-6)
    assert {k.replace("._checkpoint_wrapped_module", "") for k in grads_b} == set(grads_a)
    for k, g in grads_b.items():
        torch.testing.assert_close(g, grads_a[k.replace("._checkpoint_wrapped_module", "")], rtol=1e-5, atol=1e-7)


def test_atomic_checkpoint_io_round_trip_and_refuses_unsafe_loads(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    state = {"state_dict": {"w": torch.arange(3.0)}, "global_step": 5, "loops": {"a": [1, "b"]}}
    io.save_checkpoint(state, tmp_path / "checkpoints" / "last.ckpt")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]  # no temp file left behind
    loaded = io.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert loaded["global_step"] == 5 and torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    with pytest.raises(ValueError, match="weights_only=False"):
        io.load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)

    import argparse

    # an arbitrary class instance needs code to unpickle: weights_only refuses it
    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "checkpoints" / "evil.ckpt")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        io.load_checkpoint(tmp_path / "checkpoints" / "evil.ckpt")
    assert find_resume_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints" / "last.ckpt"
    assert find_resume_checkpoint(tmp_path / "nothing") is None
