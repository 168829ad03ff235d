"""Process-wide CPU settings the ``cellmae`` command applies before any work: how idle OpenMP threads
wait, and how glibc's allocator treats the large tensors of a ViT on a screen's crops.

Both are measured in docs/speed.md. Neither changes a single number the models compute; they change
where threads wait and where memory comes from.

* ``GOMP_SPINCOUNT=10000`` (read when torch loads its OpenMP runtime, libgomp): an idle OpenMP thread
  spins for a short while (about a hundred microseconds) and then sleeps. The CPU attention and the
  small ops around it run thousands of short parallel regions a step; threads that sleep at once
  (``OMP_WAIT_POLICY=PASSIVE``) pay a wake-up at each of them, and threads that spin for long
  (libgomp's default) take the core from the thread still working whenever the cores are shared
  (DataLoader workers, other jobs). The short spin runs as fast as spinning on an idle machine and
  as fast as sleeping on a loaded one.
* glibc ``malloc`` serves every block over its mmap threshold (at most 32 MiB) with a fresh ``mmap``
  and returns it on ``free``: each activation of a ViT-S on 16 six-channel 256x256 crops (tens to
  hundreds of MiB) is then faulted in page by page, zeroed by the kernel, on every forward. That
  halved the bf16 matmul rate and made elementwise ops (GELU, bias adds) 5x slower. With
  ``mallopt(M_MMAP_MAX=0)`` and a trim threshold above any activation, freed blocks stay in the
  heap and the next step reuses them. This is the job jemalloc or tcmalloc do when preloaded; glibc's
  own switch needs no extra library and can be set at run time (glibc reads its tunables only at
  process start). The cost: the process keeps its peak heap until it exits, which a training or
  embedding job reaches on its first step anyway.

A value the user sets wins: an ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` in the environment is kept
(neither is then set), and the allocator is
left alone when ``CELLMAE_MALLOC=system``, when ``GLIBC_TUNABLES`` sets a malloc tunable, or when
another allocator is preloaded (``LD_PRELOAD`` names jemalloc, tcmalloc or mimalloc).
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# mallopt takes a C int: the largest trim threshold it accepts keeps up to 2 GiB of free heap top.
_TRIM_THRESHOLD = 2**31 - 1
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


# Spin iterations of an idle libgomp thread before it sleeps (docs/speed.md: idle and loaded A/B).
SPINCOUNT = "10000"


def openmp_waiting(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The OpenMP variables to add to ``environ`` (empty when the user set their own)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return {}
    return {"GOMP_SPINCOUNT": SPINCOUNT}


def set_openmp_waiting() -> None:
    """Idle OpenMP threads spin briefly, then sleep, unless the environment says otherwise.

    Only effective before torch is imported; a no-op after."""
    os.environ.update(openmp_waiting())


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Make glibc keep freed blocks in the heap for reuse (no per-tensor mmap/munmap).

    Returns True when the allocator was changed, False when it was left alone (not glibc, the user
    chose otherwise, or ``mallopt`` refused)."""
    env = os.environ if environ is None else environ
    if env.get("CELLMAE_MALLOC", "").lower() == "system":
        return False
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return False
    if any(name in env.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # the trim threshold first: with it set, glibc also stops adapting its mmap threshold
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(libc.mallopt(_M_MMAP_MAX, 0))


def tune_cpu_process() -> None:
    """Both settings, as the ``cellmae`` command applies them at start-up."""
    set_openmp_waiting()
    keep_freed_memory()
