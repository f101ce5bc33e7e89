"""The multi-process tests' launcher: one process per rank, each ending without Python's finalisation.

Why: a rank that has finished its work and destroyed its process group can still abort at exit
("terminate called without an active exception", SIGABRT): gloo's C++ threads and transport are torn
down by static destructors while the interpreter finalises (pytorch/pytorch#179291 describes a similar
race). It aborted a two-process gloo test twice in about twenty full runs, with no failed assertion
reported, and never in forty runs of those tests alone. Each rank here ends with
``os._exit(0)`` once its function has returned, so only a failure inside the test itself fails it;
``faulthandler`` prints every thread's Python stack should a rank still crash before that.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Callable
from typing import Any


def _rank_entry(rank: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    faulthandler.enable()
    fn(rank, *args)  # an exception propagates: torch.multiprocessing reports it to the parent
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_ranks(fn: Callable[..., None], nprocs: int, *args: Any) -> None:
    """``fn(rank, *args)`` in ``nprocs`` fresh processes; raises if any of them fails."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_entry, args=(fn, args), nprocs=nprocs, join=True)
