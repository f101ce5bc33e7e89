"""Predicted peak VRAM of a training run, as nvidia-smi would show it, from measured calibration data.

Why a model and not a fixed table of card sizes: the commonly quoted table is wrong at both ends (its
16 GB tier needs ~17 GB; its 4-8 GB tiers leave most of the card idle), and a recommendation must hold for any
card size, image size and batch. The shape of the model follows where the memory goes:

    peak = context + fixed(variant) + batch x (a(variant) s^2 + b(variant) s^4) + classes term
    s = image_size / 288

``fixed`` is weights, gradients and AdamW state (plus cuDNN/cuBLAS workspaces); the per-image term
is activations: convolution and MLP activations grow with the pixel count (s^2), and SegFormer's
efficient attention keeps N x N/R^2 scores whose size grows with the pixel count squared (s^4).
The class term is the full-resolution logits, softmax and one-hot of the Dice+CE loss. ``context``
is the CUDA context nvidia-smi counts but the allocator does not. Coefficients are least-squares
fits per (variant, precision class: mixed or fp32) to measured peaks of the allocator's *reserved*
memory (what the process really holds), so allocator rounding and fragmentation are included.

The compiled path (torch.compile + CUDA graphs, what ``compile = auto`` runs on long jobs) fuses the
loss and keeps graph memory pools; its peak is predicted as ``ratio x eager activations + offset``
fitted per variant to measured compiled runs.

The whole-step CUDA graph (``cuda_graphs``, on by default on one GPU) keeps the training step's
memory in its own pool for the whole run, so validation allocates beside it instead of reusing it:
its peak is predicted as ``context + training peak + validation activations + offset + share x those
activations``: the graphed runs' excess over that sum grows with the batch (measured +0.04 GiB at
b0 . 2 . 224, up to +0.47 at batch 32), so offset and share are the upper envelope of the residuals of
graphed runs of ``bench_train_speed.py`` (a constant big enough for batch 32 would waste a fifth of a 4 GB card).

The grid is measured with the model the app trains: SegFormer's fast path (core/engine/fast_segformer.py),
which reserves about a third less than transformers' own modules at b5; ``MEDSEG_FAST_PATH=off`` therefore
needs more memory than planned.

Several GPUs add memory on each GPU, and how much depends on the step (``ddp_extra_gb``):
graphed, the gradients are views into one flat buffer that is all-reduced in place inside the graph
(core/engine/grad_sync.py), so only NCCL's buffers are added (measured, ``DDP_GRAPHED_EXTRA_GB``);
ungraphed, Lightning's DDP wrapper also keeps a copy of the gradients in its buckets (an estimate
from the parameter count plus ``NCCL_WORKSPACE_GB``, not measured).

Recalibrate on a new GPU/driver/torch version (all measurements go through our own step code):

    python benchmarks/bench_memory.py --precisions bf16-mixed --batches 1,4,16,32 --out R/bench_memory_fastpath.json
    python benchmarks/bench_memory.py --precisions 32 --batches 1,4,16 --out R/bench_memory_fastpath_fp32.json
    python benchmarks/bench_train_speed.py --impls ours-graphs --out R/bench_train_speed_graphed_peaks.json \
        --cases b0-32-288,b2-32-288,b4-32-288,b5-32-288,b0-2-224,b2-4-256,b4-8-288,b5-16-288   # graphed peaks
    python benchmarks/calibrate_memory.py --grid R/bench_memory_fastpath*.json \
        --compiled R/bench_train_speed_graphed_peaks.json R/bench_train_speed_b5_fastpath.json \
                   R/bench_train_speed_b5_warm.json R/bench_train_speed_b0_tier.json \
        --extra   # fits and writes medseg_gui/core/planning/calibration/memory.json

(R = benchmarks/results; the three measuring commands only measure memory and may share one GPU.)

then check the fit with ``benchmarks/bench_fit.py`` (simulated cards, real Trainer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

SAFETY_MARGIN_GB = 0.75  # fragmentation, cuDNN workspaces, a browser tab opening mid-run
SAFETY_MARGIN_SHARE = 0.08  # the memory model's worst measured error (this module's fit) on big budgets


def safety_margin(free_gb: float) -> float:
    """The free memory a plan leaves unused: the larger of a fixed floor and a share of the card, because
    the model's error grows with the budget."""
    return max(SAFETY_MARGIN_GB, SAFETY_MARGIN_SHARE * free_gb)


@dataclass(frozen=True)
class MemoryQuery:
    variant: str
    batch_size: int
    image_size: int
    num_classes: int
    precision: str  # resolved: "32", "16-mixed", "bf16-mixed"
    compiled: bool = False
    graphs: bool = False  # whole-step CUDA graph (core/engine/step_graph.py): its pool stays reserved
    ddp: bool = False  # one of several GPUs under DDP: gradient buckets and NCCL buffers (``ddp_extra_gb``)


MemoryModel = Callable[[MemoryQuery], float]  # -> predicted peak GB as nvidia-smi shows it

CALIBRATION_FILE = Path(__file__).parent / "calibration" / "memory.json"
CALIBRATED_CLASSES = 4
# Bytes per pixel per extra class: logits upsampled to full size in fp32 and their softmax, one-hot,
# gradient and two loss intermediates (six fp32 copies), beyond the calibrated class count.
CLASS_BYTES_PER_PIXEL = 6 * 4

# What several GPUs add on each GPU (the calibration is single-GPU).
# Graphed step (core/engine/grad_sync.py): gradients are views into ONE flat buffer, all-reduced in place
# inside the captured step, so there is no second gradient copy; only NCCL's buffers are added.
# Measured on 2 x H200 (torch 2.11, NCCL 2.28), peak reserved memory on rank 0, 1 GPU -> 2 GPUs:
#   b5 . 16 . 256 bf16: 9.717 -> 9.951 GiB (+0.234)  benchmarks/results/bench_multi_gpu_b5_rerun.json
#   b5 . 16 . 256 bf16: 9.908 -> 10.141 GiB (+0.232) benchmarks/results/bench_multi_gpu.json
#   b2 . 32 . 256 bf16: 13.689 -> 13.779 GiB (+0.090) benchmarks/results/bench_multi_gpu.json
# The constant is the largest of these, rounded up. It is the allocator's view: allocations NCCL makes
# outside PyTorch's allocator are not in it (they fall within the safety margin, ``safety_margin`` above).
DDP_GRAPHED_EXTRA_GB = 0.25
# Ungraphed step (Lightning's DDP wrapper, 25 MB buckets): an ESTIMATE, not measured here:
# * gradient buckets: DDP all-reduces gradients through flat buckets that, by default
#   (gradient_as_bucket_view=False), are one more copy of all gradients, in the parameters' dtype:
#   fp32 (4 bytes) even under mixed precision, where Lightning keeps fp32 weights;
# * NCCL's communication buffers and its own CUDA allocations (recalibrate with an ungraphed 2-GPU
#   run of benchmarks/bench_multi_gpu.py, ``--cuda-graphs off``-style, when one is recorded).
DDP_GRADIENT_BYTES_PER_PARAM = 4
NCCL_WORKSPACE_GB = 0.5
# SegFormer parameters (millions) with the decode head, per variant (the paper's and the model cards').
SEGFORMER_PARAMS_M = {"b0": 3.7, "b1": 13.7, "b2": 27.5, "b3": 47.3, "b4": 64.1, "b5": 84.7}


def ddp_extra_gb(variant: str, graphed: bool = False) -> float:
    """GiB several GPUs add per GPU. Graphed: NCCL's buffers only (measured; the gradients are
    all-reduced in place in one flat buffer). Ungraphed DDP: one gradient bucket copy plus NCCL's
    workspace (estimated)."""
    if graphed:
        return DDP_GRAPHED_EXTRA_GB
    params = SEGFORMER_PARAMS_M.get(variant, max(SEGFORMER_PARAMS_M.values())) * 1e6
    return params * DDP_GRADIENT_BYTES_PER_PARAM / 2**30 + NCCL_WORKSPACE_GB


def precision_class(precision: str) -> str:
    return "32" if precision in ("32", "32-true", "64") else "mixed"


@dataclass(frozen=True)
class Coeffs:
    fixed: float  # GiB
    a: float  # GiB per image at 288 px, pixel-count term
    b: float  # GiB per image at 288 px, pixel-count-squared term

    def activations(self, batch: int, image_size: int) -> float:
        s2 = (image_size / 288) ** 2
        return batch * (self.a * s2 + self.b * s2 * s2)


class MemoryModelData:
    """Calibration loaded from JSON; callable as a ``MemoryModel`` (``recommend`` takes it)."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.context_gb = float(data["context_gib"])
        self.source = f"{data.get('gpu', '?')}, torch {data.get('torch', '?')}"
        self.train = {k: Coeffs(**v) for k, v in data["train"].items()}
        self.val = {k: Coeffs(**v) for k, v in data.get("val", {}).items()}
        self.compiled = {k: (float(v["ratio"]), float(v["offset"])) for k, v in data.get("compiled", {}).items()}
        self.trainer_overhead = float(data.get("trainer_overhead", 1.0))
        graphs = data.get("graphs")
        self.graphs_offset = float(graphs["offset"]) if graphs else None
        self.graphs_share = float(graphs.get("per_activation_gib", 0.0)) if graphs else 0.0

    def _key(self, variant: str, precision: str) -> str:
        key = f"{variant}/{precision_class(precision)}"
        if key not in self.train:
            raise KeyError(f"no memory calibration for {key}")
        return key

    def train_peak(self, q: MemoryQuery) -> float:
        """Allocator peak (GiB) of a training step, without the CUDA context."""
        c = self.train[self._key(q.variant, q.precision)]
        act = self.activations(q)
        if q.compiled and q.variant in self.compiled:
            ratio, offset = self.compiled[q.variant]
            return (c.fixed + ratio * act) * self.trainer_overhead + offset
        return (c.fixed + act) * self.trainer_overhead

    def val_peak(self, q: MemoryQuery) -> float:
        key = self._key(q.variant, q.precision)
        c = self.val.get(key)
        if c is None:
            return 0.0
        return c.fixed + self.val_activations(q)

    def val_activations(self, q: MemoryQuery) -> float:
        c = self.val.get(self._key(q.variant, q.precision))
        if c is None:
            return 0.0
        return c.activations(q.batch_size, q.image_size) + self._class_term(q) / 3

    def graph_peak(self, q: MemoryQuery) -> float:
        """Allocator peak (GiB) with the whole-step graph: its pool plus validation beside it, plus the
        measured excess of graphed runs over that sum: a fixed part and a share of the activations (it
        grows with the batch)."""
        eager = replace(q, compiled=False, graphs=False)
        val = self.val_activations(q)
        return self.train_peak(eager) + val + (self.graphs_offset or 0.0) + self.graphs_share * (self.activations(eager) + val)

    def activations(self, q: MemoryQuery) -> float:
        """The per-image part of a training step's peak (GiB): everything but weights, gradients, optimiser."""
        return self.train[self._key(q.variant, q.precision)].activations(q.batch_size, q.image_size) + self._class_term(q)

    @staticmethod
    def _class_term(q: MemoryQuery) -> float:
        extra = max(0, q.num_classes - CALIBRATED_CLASSES)
        return extra * q.batch_size * q.image_size**2 * CLASS_BYTES_PER_PIXEL / 2**30

    def __call__(self, q: MemoryQuery) -> float:
        """Peak GB of the run (training or validation step, whichever is higher) incl. CUDA context."""
        graphed = q.graphs and self.graphs_offset is not None
        ddp = ddp_extra_gb(q.variant, graphed=graphed) if q.ddp else 0.0
        if graphed:
            return self.context_gb + self.graph_peak(q) + ddp
        return self.context_gb + max(self.train_peak(q), self.val_peak(q)) + ddp


@lru_cache(maxsize=1)
def default_memory_model() -> MemoryModel | None:
    """The packaged calibration, or None when the package ships none (recommendations then keep the
    tier's batch and say that no memory model is available)."""
    if not CALIBRATION_FILE.exists():
        return None
    return MemoryModelData(json.loads(CALIBRATION_FILE.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------------------------------
# fitting (used by benchmarks/calibrate_memory.py; numpy only)
# --------------------------------------------------------------------------------------------------
def fit_coeffs(rows: list[dict[str, Any]], peak_key: str) -> Coeffs:
    """Least squares of peak = fixed + B (a s^2 + b s^4) over measured rows; coefficients kept >= 0."""
    import numpy as np

    s2 = np.array([(r["image_size"] / 288) ** 2 for r in rows])
    batch = np.array([r["batch"] for r in rows], dtype=float)
    y = np.array([r[peak_key] for r in rows])
    design = np.stack([np.ones_like(s2), batch * s2, batch * s2 * s2], axis=1)
    # Relative error matters (a 10 % miss on 2 GB and on 40 GB are equally bad): weight by 1/y.
    w = 1.0 / np.maximum(y, 0.05)
    coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    if coef[2] < 0:  # no measurable s^4 term: refit without it
        coef2, *_ = np.linalg.lstsq(design[:, :2] * w[:, None], y * w, rcond=None)
        coef = np.array([coef2[0], coef2[1], 0.0])
    return Coeffs(fixed=float(max(coef[0], 0.0)), a=float(max(coef[1], 0.0)), b=float(max(coef[2], 0.0)))
