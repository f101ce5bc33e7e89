"""The fast path's decisions: CUDA graphs, whether to compile, and where the compile cache lives.

Why: at the tiers' small batches (2-16 images) SegFormer's eager step is bound by the CPU launching
thousands of small kernels, not by the GPU. Two remedies, decided separately:

* **CUDA graphs** (``cuda_graphs``): the whole step (forward, loss, backward, optimiser) is captured
  once and replayed (core/engine/step_graph.py). Costs a few ordinary warm-up steps, so ``auto`` turns it
  on wherever it can work: CUDA GPUs, any precision (fp16's dynamic loss scale is kept on the GPU,
  core/engine/loss_scale.py), with or without gradient accumulation (two graphs: the micro-batches
  and the one that ends with the optimiser step). On several GPUs the graph includes the gradient
  average (one all-reduce of one flat buffer, core/engine/grad_sync.py) under Lightning's DDP
  processes; other strategies keep their own synchronisation, ungraphed.
* **torch.compile** (``compile``): inductor fuses the forward and loss into far fewer kernels; the
  price is a first warm-up of one to two minutes, paid back only by runs long enough; hence ``auto``.
  Each repeated encoder block is compiled on its own ("regional", ``compile_scope``): the blocks of a
  stage share one compiled graph, so the warm-up shrinks (b5: about a minute instead of 174 s; 18 s
  when the compile cache already holds the configuration).
  Inside a graph it compiles with mode "default" (the graph is ours); without graphs on one GPU it
  uses "reduce-overhead" (inductor's own CUDA graphs of forward and backward).

Shapes must stay static: a recompile with dynamic shapes crashed inductor in our measurements, so
``dynamic=False``, automatic dynamic shapes off, drop_last on training and padded validation batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medseg_gui.core.paths import cache_dir

# A run shorter than this many optimiser steps does not pay back the warm-up (60-150 s measured)
# even at a 7x speed-up over ~5 eager steps/s at the tiers' batch sizes.
AUTO_COMPILE_MIN_STEPS = 1500
# Inside our CUDA graph, compiling adds 1.3-1.4x (one H200, compiled block by block: b0/2/224 428 -> 587
# img/s after a 63 s first warm-up, b5/16/288 296 -> 389 after 55-59 s, 18 s when the cache is warm;
# the graph alone warms up in 13-16 s): break-even is ~3,300 steps at b5 and ~40,000 at b0 on a cold
# cache, a few hundred on a warm one. One threshold between the two; long runs (the tiers' 100 epochs
# of thousands of steps) pass at every tier.
AUTO_COMPILE_MIN_STEPS_GRAPHED = 20_000

# Ordinary steps before a CUDA graph capture (PyTorch's whole-network recipe uses 3 on one GPU).
GRAPH_WARMUP_STEPS = 3


@dataclass(frozen=True)
class CompilePlan:
    enabled: bool
    mode: str | None  # "reduce-overhead" (CUDA graphs) or "default" (fusion only)
    reason: str


@dataclass(frozen=True)
class GraphPlan:
    enabled: bool
    reason: str


# Lightning's names for fp16 mixed precision (the one with a loss scaler).
FP16_PRECISIONS = ("16-mixed", "16", "fp16")

# Strategies under which the graphed step can own the gradient average (Lightning's process launch
# and sampler, our all-reduce instead of DDP's wrapper: core/grad_sync.graph_ddp_strategy).
GRAPH_STRATEGIES = ("auto", "ddp")


def plan_cuda_graphs(setting: str, *, on_cuda: bool, devices: int = 1, precision: str = "bf16-mixed",
                     accumulate: int = 1, strategy: str = "auto") -> GraphPlan:
    """Whether to capture the whole training step as one CUDA graph; the reason is shown to users.

    ``devices`` counts every GPU of the run (devices per node x nodes)."""
    if setting == "off":
        return GraphPlan(False, "CUDA graphs are off in the configuration")
    blockers = []
    if not on_cuda:
        blockers.append("no CUDA GPU")
    if devices > 1 and strategy not in GRAPH_STRATEGIES:
        blockers.append(f"the '{strategy}' strategy (the graphed step averages gradients itself only under "
                        "plain DDP; use strategy 'ddp' or 'auto')")
    if blockers:
        verb = "cannot be used" if setting == "on" else "not used"
        return GraphPlan(False, f"CUDA graphs {verb}: {', '.join(blockers)}")
    extras = []
    if devices > 1:
        extras.append(f"averaging gradients across {devices} GPUs inside it")
    if precision in FP16_PRECISIONS:
        extras.append("with the fp16 loss scale kept on the GPU")
    if accumulate > 1:
        extras.append(f"accumulating {accumulate} micro-batches per optimiser step")
    what = "the whole training step replays as one graph" if accumulate == 1 else \
        "the whole training step replays as CUDA graphs"
    listed = "".join(", " + e for e in extras) + ("," if extras else "")
    return GraphPlan(True, f"CUDA graphs {setting}: {what}{listed} after "
                           f"{GRAPH_WARMUP_STEPS} warm-up {'steps' if accumulate == 1 else 'optimiser steps'}")


def check_graph_memory(plan: GraphPlan, *, graph_gb: float | None, eager_gb: float | None,
                       budget_gb: float | None) -> GraphPlan:
    """Drop the graph when only the graph would not fit: its pool stays reserved during validation,
    so a run sized to the card without graphs may not fit with them (predictions: core/planning/memory.py;
    the budget is the free memory minus the recommender's safety margin)."""
    if not plan.enabled or graph_gb is None or eager_gb is None or budget_gb is None:
        return plan
    if graph_gb <= budget_gb or eager_gb > budget_gb:
        return plan
    return GraphPlan(False, f"CUDA graphs not used: with them this run would need about {graph_gb:.1f} GB, "
                            f"without them {eager_gb:.1f} GB, and the budget is {budget_gb:.1f} GB (free memory "
                            f"minus a safety margin); a smaller batch or image size lets the faster graphed step fit")


def plan_compile(setting: str, *, on_cuda: bool, total_steps: int, devices: int = 1,
                 whole_step_graph: bool = False) -> CompilePlan:
    """Decide from the config's ``compile`` setting and the run's shape; the reason is shown to users."""
    if setting == "off":
        return CompilePlan(False, None, "compile is off in the configuration")
    if not on_cuda:
        if setting == "on":
            return CompilePlan(False, None, "compile is only used on CUDA GPUs (on the CPU its warm-up of "
                                            "several minutes costs more than it saves); running eager")
        return CompilePlan(False, None, "no CUDA GPU: running eager")
    # Inside our whole-step graph inductor only fuses; alone on one GPU it also graphs forward and
    # backward itself; CUDA graphs and DDP's gradient hooks do not mix well, so DDP only fuses.
    mode = "reduce-overhead" if devices == 1 and not whole_step_graph else "default"
    if setting == "on":
        return CompilePlan(True, mode, f"compile is on ({mode})")
    needed = AUTO_COMPILE_MIN_STEPS_GRAPHED if whole_step_graph else AUTO_COMPILE_MIN_STEPS
    if total_steps >= needed:
        return CompilePlan(True, mode, f"compile auto: {total_steps} steps repay the one-off warm-up ({mode})")
    return CompilePlan(False, None, f"compile auto: {total_steps} steps are too few to repay a one- to two-minute "
                                    f"warm-up (needs {needed}{' with CUDA graphs on' if whole_step_graph else ''}); "
                                    "running uncompiled")


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
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)  # regional: ~10 per block code


def compile_fn(fn, mode: str):
    import torch

    return torch.compile(fn, mode=mode, dynamic=False)


# How much one compilation covers: "whole" traces the step's forward and loss as one graph; "regional"
# compiles each repeated encoder block (and the decode head, and the loss) on its own. The blocks of
# a stage share code and shapes, so b5's 52 blocks cost 5 compilations instead of one graph 52 blocks
# long. Measured on an H200 at b5/16/288 inside our CUDA graph (benchmarks/results/
# bench_train_speed_b5_fastpath.json): regional 389 img/s after a 64 s cold warm-up, where the whole
# graph had given 344 img/s after 174 s (bench_train_speed.json, before the fast path). Whole stays
# selectable (MEDSEG_COMPILE_SCOPE=whole) for comparisons.
COMPILE_SCOPE_ENV = "MEDSEG_COMPILE_SCOPE"
COMPILE_SCOPES = ("whole", "regional")
DEFAULT_COMPILE_SCOPE = "regional"


def compile_scope(mode: str | None) -> str:
    """The scope for this run: the environment's choice, else the default; "reduce-overhead" is always
    whole (inductor's own CUDA graphs per region would multiply graphs and memory pools)."""
    chosen = os.environ.get(COMPILE_SCOPE_ENV, DEFAULT_COMPILE_SCOPE).strip().lower()
    if chosen not in COMPILE_SCOPES or mode != "default":
        return "whole"
    return chosen


def compile_regions(model, mode: str, backend="inductor") -> int:
    """Compile, in place, each repeated encoder block and the decode head of a SegFormer; returns how many
    modules were wrapped. ``nn.Module.compile`` keeps parameter names (no ``_orig_mod.`` prefix), so
    state dicts and checkpoints are unchanged. Needs the fast path's encoder and drop path
    (core/engine/fast_segformer.py), which keep per-block Python numbers and hooks out of the traces."""
    from transformers.models.segformer.modeling_segformer import SegformerDecodeHead, SegformerLayer

    regions = [m for m in model.modules() if isinstance(m, (SegformerLayer, SegformerDecodeHead))]
    for module in regions:
        module.compile(mode=None if backend != "inductor" else mode, dynamic=False, backend=backend)
    return len(regions)


def uncompile_regions(model) -> None:
    """Undo ``compile_regions`` after a run (the model may be used later on another device or eagerly)."""
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None


def mark_step() -> None:
    """Tell CUDA-graph trees a new iteration starts, so the previous step's outputs may be reused."""
    import torch

    torch.compiler.cudagraph_mark_step_begin()
