"""The fast path's decisions: whether to compile, with which mode, and where the compile cache lives.

Why compile at all: at the brief's small batches (2-16 images) SegFormer's eager step is bound by
the CPU launching hundreds of small kernels; ``torch.compile(mode="reduce-overhead")`` fuses them
and replays the whole step as CUDA graphs, which measured 7-10x faster on the same card
(shared/DESIGN.md, "Measured facts"). The price is a warm-up of one to three minutes, paid back only
by runs long enough; hence ``compile = "auto"``.

Shapes must stay static: a recompile with dynamic shapes crashed inductor in our measurements, so
``dynamic=False``, automatic dynamic shapes off, drop_last on training and padded validation batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medseg_gui.core.paths import cache_dir

# A run shorter than this many optimiser steps does not pay back the warm-up (60-150 s measured)
# even at a 7x speed-up over ~5 eager steps/s at the brief's batch sizes.
AUTO_COMPILE_MIN_STEPS = 1500


@dataclass(frozen=True)
class CompilePlan:
    enabled: bool
    mode: str | None  # "reduce-overhead" (CUDA graphs) or "default" (fusion only)
    reason: str


def plan_compile(setting: str, *, on_cuda: bool, total_steps: int, devices: int = 1) -> CompilePlan:
    """Decide from the config's ``compile`` setting and the run's shape; the reason is shown to users."""
    if setting == "off":
        return CompilePlan(False, None, "compile is off in the configuration")
    if not on_cuda:
        if setting == "on":
            return CompilePlan(False, None, "compile is only used on CUDA GPUs (on the CPU its warm-up of "
                                            "several minutes costs more than it saves); running eager")
        return CompilePlan(False, None, "no CUDA GPU: running eager")
    # CUDA graphs and DDP's gradient hooks do not mix well; keep fusion, drop the graphs.
    mode = "reduce-overhead" if devices == 1 else "default"
    if setting == "on":
        return CompilePlan(True, mode, f"compile is on ({mode})")
    if total_steps >= AUTO_COMPILE_MIN_STEPS:
        return CompilePlan(True, mode, f"compile auto: {total_steps} steps repay the one-off warm-up ({mode})")
    return CompilePlan(False, None, f"compile auto: {total_steps} steps are too few to repay a 1-3 minute "
                                    f"warm-up (needs {AUTO_COMPILE_MIN_STEPS}); running eager")


def configure_compile_cache() -> str:
    """Point inductor's and Triton's caches at the app's cache folder (unless the user set them).

    A second run of the same configuration then loads compiled kernels and graphs instead of
    regenerating them (warm-up of seconds instead of minutes).
    """
    root = cache_dir("compile")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def prepare_compiler() -> None:
    """Fresh dynamo state for a new run in the same process (the GUI trains several in a row)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)


def compile_fn(fn, mode: str):
    import torch

    return torch.compile(fn, mode=mode, dynamic=False)


def mark_step() -> None:
    """Tell CUDA-graph trees a new iteration starts, so the previous step's outputs may be reused."""
    import torch

    torch.compiler.cudagraph_mark_step_begin()
