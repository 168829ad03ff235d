"""Read a weights file by what it contains, never by its name.

The public OpenPhenom file is called ``model.safetensors`` but is a ``torch.save`` zip, and torch
(2.14) picks its reader from the path's suffix, so handing it the path fails with a safetensors
"header too large" error. We therefore look at the first bytes ourselves and give torch an open file
object (no suffix to misread) or give the file to the safetensors reader. No library exposes this
sniffing, hence the few lines here.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from cellmae.utils.errors import InputError, one_line, reading

TORCH_ZIP = "torch-zip"
TORCH_PICKLE = "torch-pickle"  # the pre-1.6 torch.save format
SAFETENSORS = "safetensors"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def sniff_format(path: str | os.PathLike) -> str:
    """``"torch-zip"``, ``"torch-pickle"`` or ``"safetensors"``, from the file's first bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == _ZIP_MAGIC:
        return TORCH_ZIP
    # safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'
    if len(head) == 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8:
        return SAFETENSORS
    if head[:1] and head[0] == _PICKLE_PROTO:
        return TORCH_PICKLE
    raise InputError(
        f"{path}: not a weights file (neither a torch.save zip nor safetensors; first bytes {head[:8]!r}); "
        "pass a model.safetensors / .pth checkpoint"
    )


def read_state_dict(path: str | os.PathLike, *, key: str = "state_dict") -> dict[str, torch.Tensor]:
    """The tensors in ``path``: a safetensors file, or a torch file holding ``{key: {...}}`` or a flat dict.

    Torch files are read with torch's weights-only unpickler: a file that needs any other Python object
    is refused (with the object's name), never unpickled. Failures are one-line ``InputError``s naming
    the file.
    """
    path = Path(path)
    kind = sniff_format(path)
    if kind == SAFETENSORS:
        from safetensors.torch import load_file

        with reading(path, "safetensors weights file", "it may be truncated: save or download it again"):
            return load_file(str(path))
    with open(path, "rb") as f:  # a file object: torch cannot dispatch on the suffix
        try:
            obj = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise InputError(f"{path}: cellmae refuses to load it: {_unsafe_reason(err)}") from err
        except (RuntimeError, EOFError) as err:
            raise InputError(f"{path}: cannot read this torch checkpoint ({one_line(err)}); it may be truncated: "
                             "save or download it again") from err
    state: Any = obj.get(key, obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a dict of tensors (or {{'{key}': {{...}}}}), got {type(state).__name__}")
    return state


def _unsafe_reason(err: Exception) -> str:
    """Why weights-only loading stopped, without torch's advice to turn the safety off."""
    found = re.findall(r"GLOBAL ([\w.]+)", str(err))
    what = f"it needs the Python object {found[0]}" if found else "it holds Python objects besides tensors"
    return (f"{what}, and only plain tensors are read (nothing is ever unpickled); re-save the weights alone "
            "(a state dict of tensors, or safetensors) with the code that made them")
