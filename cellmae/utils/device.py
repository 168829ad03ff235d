"""Device and precision choice: chosen from what the machine has, never assumed.

CUDA when present, else CPU. bf16 autocast where the hardware runs it natively (Ampere+ GPUs,
CPUs with AVX512-BF16/AMX).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp16", "fp32"]


def select_device(preference: str = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks CUDA when available, else CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={preference!r} was requested but CUDA is not available on this machine")
    return device


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul support (oneDNN AVX512-BF16 / AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_autocast_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype | None:
    """Return the autocast dtype for ``device`` (None means full fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision='fp16' is only supported on CUDA; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; expected one of auto, bf16, fp16, fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast context for ``device``; a no-op when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def lightning_precision(device: torch.device, precision: Precision = "auto") -> str:
    """Map our precision choice onto a Lightning ``precision=`` string."""
    dtype = select_autocast_dtype(device, precision)
    if dtype is torch.bfloat16:
        return "bf16-mixed"
    if dtype is torch.float16:
        return "16-mixed"
    return "32-true"
