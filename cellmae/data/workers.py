"""Worker processes that die with their parent, and named kill points for fault-injection tests.

A ``kill -9`` of the parent gives its worker processes no chance to clean up: a
``ProcessPoolExecutor`` worker waits forever on its task queue and a DataLoader worker can sit
on a full result queue, each holding hundreds of MB. Linux can deliver a signal to a process
when its parent dies (``prctl(PR_SET_PDEATHSIG)``); no library in our dependencies exposes it
(``multiprocessing`` and torch only poll the parent between tasks), so it is set here via ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
KILL_ENV = "CELLMAE_FAULT_KILL"


def die_with_parent(parent_pid: int, *_worker_id: object) -> None:
    """Make this (worker) process receive SIGKILL when ``parent_pid`` dies (Linux; elsewhere a no-op).

    Use as a pool ``initializer`` (``initargs=(os.getpid(),)``) or, via :func:`worker_init_fn`, as a
    DataLoader ``worker_init_fn``. The signal follows the *thread* that forked the worker, so create
    pools and loaders from a thread that lives as long as they do (the main thread here).
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return  # a sandbox refusing prctl: the worker still works, it just may outlive a killed parent
    # The parent may have died between fork and prctl: then the signal never comes.
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_init_fn(user_fn=None):
    """A picklable DataLoader ``worker_init_fn`` that ties the worker to this process, then runs ``user_fn``."""
    return functools.partial(_init_loader_worker, os.getpid(), user_fn)


def _init_loader_worker(parent_pid: int, user_fn, worker_id: int) -> None:
    die_with_parent(parent_pid)
    if user_fn is not None:
        user_fn(worker_id)


def fault_point(name: str) -> None:
    """``kill -9`` this process here when ``$CELLMAE_FAULT_KILL`` is ``name`` (or ``name:N``, the Nth time).

    Lets the fault-injection tests interrupt a stage at exact points (mid-part, before the manifest,
    after the rename ...) instead of at timing-dependent moments; unset, it costs one dict lookup.
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    want, _, nth = spec.partition(":")
    if want != name:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_HITS: dict[str, int] = {}
