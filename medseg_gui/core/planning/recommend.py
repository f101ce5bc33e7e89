"""From a hardware snapshot (and optionally the dataset) to a full configuration with its reasons.

The tier comes from the *free* VRAM of the chosen GPU, not its size, because other programs
(a desktop, a notebook kernel) hold memory the run cannot use. When a memory model is given, the
batch is then sized to the budget (see ``fit_batch``); every decision is written down as a reason so
the user sees why, and anything surprising as a warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medseg_gui.core.config import VARIANTS, RunConfig, hub_id, set_num_classes
from medseg_gui.core.data.summary import DatasetSummary
from medseg_gui.core.gpu_identity import choose_gpus, device_count, gpu_label
from medseg_gui.core.hardware import GpuInfo, HardwareSnapshot
from medseg_gui.core.planning.memory import (SEGFORMER_PARAMS_M, MemoryModel, MemoryQuery, default_memory_model,
                                             safety_margin)
from medseg_gui.core.planning.precision import precision_for
from medseg_gui.core.planning.throughput import calibration
from medseg_gui.core.planning import speed
from medseg_gui.core.planning.tiers import TIERS, Tier, tier_for_vram
from medseg_gui.core.planning.weights import pretrained_availability
from medseg_gui.core.words import plural

MAX_BATCH = 256
OTHERS_WARN_GB = 0.5
# The warning's first sentence; the Hardware page shows it alone because its CPU card already says why.
NO_GPU_WARNING = "No GPU: training on the CPU will be very slow (hours per epoch on real data)."


@dataclass
class Alternative:
    description: str
    variant: str
    batch_size: int
    image_size: int
    predicted_peak_gb: float | None
    note: str = ""


@dataclass
class Recommendation:
    tier: Tier
    config: RunConfig
    gpu: GpuInfo | None  # the card the plan is sized for: the one with the least free memory of ``gpus``
    vram_source: str  # "gpu N free", "override", "none"
    free_gb: float | None
    budget_gb: float | None
    predicted_peak_gb: float | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    train_images: int | None = None
    gpus: list[GpuInfo] = field(default_factory=list)  # every card the run will train on

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape printed by ``medseg recommend --json`` (documented in the README)."""
        tr, ds = self.config.training, self.config.dataset
        return {
            "tier": self.tier.name,
            "tier_label": self.tier.label,
            "gpu": None if self.gpu is None else _gpu_dict(self.gpu),
            "gpus": [_gpu_dict(g) for g in self.gpus],
            "devices": tr.devices,
            "vram_source": self.vram_source,
            "free_gb": self.free_gb,
            "budget_gb": self.budget_gb,
            "predicted_peak_gb": self.predicted_peak_gb,
            "variant": tr.variant,
            "model_name": hub_id(tr.variant),
            "batch_size": tr.batch_size,
            "accumulate_grad_batches": tr.accumulate_grad_batches,
            "effective_batch_size": tr.batch_size * tr.accumulate_grad_batches * device_count(tr.gpus, tr.devices),
            "image_size": ds.image_size,
            "epochs": tr.epochs,
            "lr": tr.lr,
            "use_scheduler": tr.use_scheduler,
            "precision": tr.precision,
            "num_workers": tr.num_workers,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "alternatives": [dataclasses.asdict(a) for a in self.alternatives],
            "config": self.config.to_dict(),
        }


def _gpu_dict(gpu: GpuInfo) -> dict[str, Any]:
    """``index`` is the CUDA ordinal (what training uses); ``nvml_index`` is nvidia-smi's number."""
    return {"index": gpu.cuda_index, "nvml_index": gpu.index, "uuid": gpu.uuid, "name": gpu.name,
            "total_gb": gpu.total_gb, "free_gb": gpu.free_gb}


def default_workers(snapshot: HardwareSnapshot) -> int:
    """0 on Windows (spawned workers re-import everything), else up to 4 cores (one left for training)."""
    if snapshot.os_name == "Windows":
        return 0
    return max(0, min(4, snapshot.cpu_count - 1))


def recommend(snapshot: HardwareSnapshot, gpu_index: int | str | None = None, vram_gb: float | None = None,
              dataset: DatasetSummary | None = None, base: RunConfig | None = None,
              memory_model: MemoryModel | None | str = "default",
              gpus: list[str] | None = None) -> Recommendation:
    """Pick a tier by free VRAM (or the ``vram_gb`` what-if) and fill in a whole configuration.

    ``base`` carries the user's dataset path, class names and output folder, which are kept.
    ``memory_model``: "default" (the packaged calibration, core/planning/memory.py), a callable, or None to
    keep the tier's batch as it is.
    The cards planned for: ``gpus`` (CUDA indices or UUIDs), else ``gpu_index``, else the base
    config's ``training.gpus``, else the visible card with the most free memory; a named card that
    CUDA cannot see raises ``GpuSelectionError`` (a ValueError). Several cards are planned from the
    smallest free memory among them; the chosen cards go into ``training.gpus``.
    """
    if memory_model == "default":
        memory_model = default_memory_model()
    config = base.copy() if base is not None else RunConfig()
    reasons: list[str] = []
    warnings: list[str] = []

    wanted = (list(gpus) if gpus is not None else [str(gpu_index)] if gpu_index is not None
              else list(base.training.gpus) if base is not None else [])
    chosen: list[GpuInfo] = [] if vram_gb is not None else choose_gpus(snapshot, wanted, 1)
    gpu = min(chosen, key=lambda g: (g.free_gb is None, g.free_gb or 0.0)) if chosen else None
    if vram_gb is not None:
        free = float(vram_gb) if vram_gb > 0 else None
        source = "override"
        reasons.append(f"What-if: planning for a card with {vram_gb:g} GB free.")
        if free is None:
            warnings.append("No GPU (what-if 0 GB): training on the CPU will be very slow.")
    elif gpu is not None and gpu.free_gb is not None and all(g.free_gb is not None for g in chosen):
        free = gpu.free_gb
        source = f"gpu {gpu.cuda_index} free"
        if len(chosen) == 1:
            reasons.append(f"{gpu_label(gpu)} {gpu.name}: {gpu.free_gb:.1f} of {gpu.total_gb:.1f} GB free.")
        else:
            listed = ", ".join(f"{gpu_label(g)} {g.name} ({g.free_gb:.1f} GB free)" for g in chosen)
            reasons.append(f"{len(chosen)} GPUs: {listed}. Each trains on its own share of every batch, so the "
                           f"per-GPU batch is sized for the one with the least free memory, {gpu_label(gpu)}.")
        for g in chosen:
            others = g.used_by_others_gb
            where = "" if len(chosen) == 1 else f" on {gpu_label(g)}"
            if others is not None and others > OTHERS_WARN_GB:
                warnings.append(f"{others:.1f} GB is used by other programs{where}; close them to free it for "
                                "training.")
            if g.mig_enabled:
                warnings.append(f"MIG is enabled on {gpu_label(g)}: the memory figures are for the whole card; "
                                "plan for your MIG slice's size with the what-if control.")
    else:
        free = None
        source = "none"
        if gpu is not None:
            warnings.append(f"{gpu_label(gpu)} {gpu.name} does not report its memory; planning for the CPU.")
        elif snapshot.gpus:
            warnings.append(f"CUDA_VISIBLE_DEVICES={snapshot.cuda_visible_devices!r} hides every GPU from "
                            "training: planning for the CPU.")
        else:
            why = snapshot.nvml_error
            warnings.append(NO_GPU_WARNING + (f" Why: {why}." if why else ""))

    tier = tier_for_vram(free)
    if free is not None and tier.name == "cpu":
        warnings.append(f"{free:.1f} GB free is too little for GPU training; using the CPU tier.")
    reasons.append(f"Tier {tier.label}: SegFormer-{tier.variant}, batch "
                   f"{tier.batch_size}, {tier.image_size} px, {plural(tier.epochs, 'epoch')}, lr {tier.lr:g}.")
    _apply_tier(config, tier)
    config.training.accelerator = "cpu" if tier.name == "cpu" else "gpu"
    on_gpu = tier.name != "cpu" and bool(chosen)
    config.training.gpus = (wanted or [g.uuid or str(g.cuda_index) for g in chosen]) if on_gpu else []
    config.training.devices = len(chosen) if on_gpu else 1
    bf16_everywhere = gpu is not None and all(g.supports_bf16 for g in chosen)
    config.training.precision = precision_for("auto", on_gpu=tier.name != "cpu", bf16=bf16_everywhere)
    if tier.name != "cpu":
        if gpu is None:
            reasons.append(f"Precision {config.training.precision} (no card to ask; fp16 works on every "
                           "CUDA GPU).")
        else:
            reasons.append(f"Precision {config.training.precision}: "
                           + ("bf16 is native on this GPU (compute capability "
                              f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]})."
                              if gpu.supports_bf16 else "fp16 with loss scaling (no native bf16 on this GPU)."))
    config.training.num_workers = default_workers(snapshot)
    reasons.append(f"{plural(config.training.num_workers, 'data-loading worker')} ({snapshot.cpu_count} CPU cores, "
                   f"{snapshot.os_name}).")
    if dataset is not None:
        _apply_dataset(config, dataset, reasons)

    budget = free - safety_margin(free) if free is not None and tier.name != "cpu" else None
    rec = Recommendation(tier=tier, config=config, gpu=gpu, vram_source=source, free_gb=free,
                         budget_gb=budget, reasons=reasons, warnings=warnings,
                         train_images=dataset.train_images if dataset is not None else None,
                         gpus=list(chosen) if on_gpu else [])
    if memory_model is not None and budget is not None:
        fit_batch(rec, memory_model)
    _warn_if_no_pretrained_weights(rec)
    return rec


def _warn_if_no_pretrained_weights(rec: Recommendation) -> None:
    """Offline without cached weights, 'auto' starts from random weights: say it where the plan is read."""
    weights = pretrained_availability(rec.config)
    if weights.state == "offline":
        rec.warnings.append(f"Pretrained weights not available offline ({weights.repo}): training would start "
                            "from random weights. Choose a local weights file in the pre-flight checklist, or "
                            "connect to the internet once.")


def _apply_tier(config: RunConfig, tier: Tier) -> None:
    tr = config.training
    tr.variant = tier.variant
    tr.batch_size = tier.batch_size
    tr.accumulate_grad_batches = tier.accumulate_grad_batches
    tr.epochs = tier.epochs
    tr.lr = tier.lr
    tr.use_scheduler = tier.use_scheduler
    config.dataset.image_size = tier.image_size


def _apply_dataset(config: RunConfig, dataset: DatasetSummary, reasons: list[str]) -> None:
    if dataset.num_classes != config.dataset.num_classes or dataset.class_names:
        set_num_classes(config, dataset.num_classes, dataset.class_names)
        reasons.append(f"{dataset.num_classes} classes found in the dataset.")
    if dataset.image_size and dataset.image_size < config.dataset.image_size:
        size = max(64, -(-dataset.image_size // 32) * 32)  # round up to a multiple of 32
        if size < config.dataset.image_size:
            reasons.append(f"Image size {size} px instead of {config.dataset.image_size}: the dataset's images "
                           f"are about {dataset.image_size} px, upsampling further adds cost, not detail.")
            config.dataset.image_size = size


def predicted_peak(memory_model: MemoryModel, config: RunConfig, batch_size: int | None = None,
                   variant: str | None = None, image_size: int | None = None, graphs: bool | None = None,
                   compiled: bool | None = None, train_images: int | None = None) -> float:
    """The predicted peak of a plan: the ONE function both ``recommend`` and the session's RunStarted ask,
    so the number a plan was sized with is the number the run reports.

    ``graphs``/``compiled``: whether the step is a CUDA graph / compiled; None means as the configuration
    would run it (what a plan assumes); the session passes what it actually runs. With ``train_images``
    (the dataset's size) compile 'auto' is decided as the run will decide it (plan_compiles); without it a
    GPU plan assumes it compiles, the larger peak. ``precision`` may be 'auto': the model keys on mixed vs
    fp32 only, and 'auto' on a GPU is mixed."""
    tr, ds = config.training, config.dataset
    graphs = graphs_possible(config) if graphs is None else graphs
    if compiled is None:
        compiled = plan_compiles(config, batch_size or tr.batch_size, train_images, graphs)
    if compiled is None:  # 'auto' compiles long GPU runs, and compiled runs hold more: plan for it
        compiled = tr.compile == "on" or (tr.compile == "auto" and tr.accelerator != "cpu")
    peak = memory_model(MemoryQuery(variant=variant or tr.variant, batch_size=batch_size or tr.batch_size,
                                    image_size=image_size or ds.image_size, num_classes=ds.num_classes,
                                    precision=tr.precision, compiled=compiled,
                                    graphs=graphs, ddp=device_count(tr.gpus, tr.devices) > 1))
    if graphs and tr.accumulate_grad_batches > 1:
        peak += accumulation_buffer_gb(variant or tr.variant)
    return peak


def plan_compiles(config: RunConfig, batch_size: int, train_images: int | None, graphs: bool) -> bool | None:
    """Whether a run of this plan will compile, decided from its step count as the session decides it
    (core/planning/speed.plan_compile), so a plan's predicted peak is the one the run reports (a short
    run on a 4 GB card was planned at 3.2 GB as if compiled, and reported 2.3 GB uncompiled). None when
    it depends on what is unknown here: compile 'auto' on a GPU without the dataset's size."""
    tr = config.training
    if tr.compile != "auto" or tr.accelerator == "cpu" or not train_images:
        return None
    n_gpus = device_count(tr.gpus, tr.devices)
    steps = max(1, train_images // max(1, batch_size * n_gpus))  # the training loader drops its last short batch
    if tr.max_steps_per_epoch:
        steps = min(steps, tr.max_steps_per_epoch)
    accumulate = max(1, tr.accumulate_grad_batches)
    return speed.plan_compile(tr.compile, on_cuda=True, devices=n_gpus, whole_step_graph=graphs,
                              total_steps=steps * tr.epochs // accumulate * accumulate).enabled


def accumulation_buffer_gb(variant: str) -> float:
    """What a graph that accumulates holds beyond the graphed query of the memory model (its two graphs
    share one pool, but the gradients live in a persistent buffer). Measured once, on an H200
    (benchmarks/results/bench_graph_modes.json): b5 · 16 × 2 · 288 bf16 reserved 8.75 GiB against 8.44
    for b5 · 16 (+0.31 GiB), about the fp32 gradients of b5's 84.7 M parameters (0.32 GiB); so that
    size is added for every variant."""
    params = SEGFORMER_PARAMS_M.get(variant, max(SEGFORMER_PARAMS_M.values())) * 1e6
    return params * 4 / 2**30


def graphs_possible(config: RunConfig) -> bool:
    """Whether ``cuda_graphs`` would capture the step (core/planning/speed.py), with or without accumulation.

    The graph's pool stays reserved while validation allocates beside it, so a graphed run needs
    more memory at the same batch: the fit plans for it wherever the graph will run.
    """
    tr = config.training
    return speed.plan_cuda_graphs(tr.cuda_graphs, on_cuda=tr.accelerator != "cpu", devices=device_count(tr.gpus, tr.devices),
                            precision=tr.precision).enabled


def largest_batch(memory_model: MemoryModel, config: RunConfig, budget_gb: float, variant: str,
                  image_size: int, limit: int = MAX_BATCH, graphs: bool = False,
                  train_images: int | None = None) -> int:
    """Largest batch (0 if none) whose predicted peak stays within the budget; peak grows with batch
    (a larger batch means fewer steps, which can only turn compile 'auto' off, never on)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if predicted_peak(memory_model, config, mid, variant, image_size, graphs=graphs,
                          train_images=train_images) <= budget_gb:
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_batch(rec: Recommendation, memory_model: MemoryModel) -> None:
    """Size the batch to the budget, keeping the tier's effective batch with gradient accumulation.

    Keeps the tier's model and image size when batch 1 fits; otherwise steps down image size, then
    model, and says so. Larger batches than the tier's are taken when they fit (the GPU is otherwise
    idle), capped so the run keeps at least ~8 optimiser steps per epoch when the dataset size is known.
    """
    tr, ds = rec.config.training, rec.config.dataset
    assert rec.budget_gb is not None
    effective = rec.tier.batch_size * rec.tier.accumulate_grad_batches
    n_gpus = device_count(tr.gpus, tr.devices) if tr.accelerator != "cpu" else 1
    variant, size = tr.variant, ds.image_size
    images = rec.train_images
    batch = largest_batch(memory_model, rec.config, rec.budget_gb, variant, size, train_images=images)
    if batch == 0:
        for variant, size in _step_down(variant, size):
            batch = largest_batch(memory_model, rec.config, rec.budget_gb, variant, size, train_images=images)
            if batch:
                rec.warnings.append(f"SegFormer-{tr.variant} at {ds.image_size} px does not fit "
                                    f"{rec.budget_gb:.1f} GB even at batch 1; stepping down to "
                                    f"SegFormer-{variant} at {size} px.")
                break
        else:
            rec.warnings.append("Even SegFormer-b0 at 128 px does not fit; training on the CPU instead.")
            rec.tier = TIERS[0]
            _apply_tier(rec.config, TIERS[0])
            tr.accelerator, tr.precision = "cpu", "32"
            rec.budget_gb = None
            return
    tr.variant, ds.image_size = variant, size
    ungraphed = batch
    graphed = largest_batch(memory_model, rec.config, rec.budget_gb, variant, size, graphs=True,
                            train_images=images) if graphs_possible(rec.config) else 0
    if rec.train_images:  # keep at least ~8 optimiser steps per epoch on small datasets (all GPUs together)
        cap = max(rec.tier.batch_size, rec.train_images // (8 * n_gpus))
        batch, ungraphed, graphed = min(batch, cap), min(ungraphed, cap), min(graphed, cap)
    if graphed and (graphed >= 2 or graphed >= min(effective, ungraphed)):
        # The graph runs, accumulating inside it when the tier's effective batch needs more: measured
        # on an H200, SegFormer-b5 at 288 px trains at 290 images/s graphed at batch 16 against 69 eager
        # (the reference recipe, eager, 120 at batch 32), and 287 graphed at 16 x 2 (bench_graph_modes.json),
        # so a smaller graphed batch beats a larger eager one. Batch 1 does not count: SegFormer trains
        # poorly at it.
        batch = graphed
    tr.batch_size = batch
    tr.accumulate_grad_batches = max(1, -(-effective // (batch * n_gpus)))
    if batch == graphed and tr.accumulate_grad_batches > 1:
        # the same number of micro-batches at the smallest batch that keeps the effective batch
        batch = tr.batch_size = -(-effective // (tr.accumulate_grad_batches * n_gpus))
        while batch > 1 and predicted_peak(memory_model, rec.config, train_images=images) > rec.budget_gb:
            batch = tr.batch_size = batch - 1
            tr.accumulate_grad_batches = max(1, -(-effective // (batch * n_gpus)))
    _settle_graph(rec, graphed, ungraphed, effective)
    rec.predicted_peak_gb = predicted_peak(memory_model, rec.config, train_images=images)
    rec.reasons.append(f"Batch {batch}: predicted peak {rec.predicted_peak_gb:.1f} GB of a "
                       f"{rec.budget_gb:.1f} GB budget ({rec.free_gb:.1f} GB free minus a "
                       f"{rec.free_gb - rec.budget_gb:.2g} GB safety margin).")
    if n_gpus > 1:
        rec.reasons.append(_multi_gpu_batch_reason(batch, n_gpus, tr.accumulate_grad_batches, effective, tr.lr))
    elif tr.accumulate_grad_batches > 1:
        rec.reasons.append(f"Gradient accumulation {tr.accumulate_grad_batches} keeps the tier's effective "
                           f"batch of {effective}.")
    rec.alternatives = alternatives(rec, memory_model)


def _multi_gpu_batch_reason(batch: int, n_gpus: int, accumulate: int, tier_effective: int, lr: float) -> str:
    """The effective batch of a several-GPU plan and the learning-rate rule, in words.

    The rule: the tier's learning rate at any effective batch, on one GPU or several. AdamW's
    per-parameter step sizes make it far less sensitive to the batch than SGD (whose linear-scaling
    rule would multiply the rate by the batch ratio), and one rule for any GPU count means N GPUs at
    batch B train like one GPU at batch N x B, which is what a user comparing runs expects (exactly
    so with training.sync_batchnorm; otherwise the decode head's BatchNorm sees each GPU's batch).
    """
    total = batch * n_gpus * accumulate
    acc = f" x {accumulate} accumulation" if accumulate > 1 else ""
    return (f"Effective batch {total} images per optimiser step: batch {batch} per GPU x {n_gpus} GPUs{acc} "
            f"(the tier's is {tier_effective}). Learning rate {lr:g}, the tier's: the app keeps the same rate "
            f"for any effective batch (AdamW needs no linear scaling), so {n_gpus} GPUs at batch {batch} train "
            f"like one GPU at batch {batch * n_gpus} (exactly so with Sync BatchNorm on).")


def _settle_graph(rec: Recommendation, graphed: int, ungraphed: int, effective: int) -> None:
    """Say what the CUDA graph costs in batch size, or why it will not run (and turn it off then, so
    the plan, its predicted peak and the run agree), so the user can trade batch for speed knowingly."""
    tr = rec.config.training
    if not graphs_possible(rec.config):
        return
    if graphed and tr.batch_size <= graphed:
        if ungraphed > tr.batch_size:
            inside = " and accumulates the micro-batches inside it" if tr.accumulate_grad_batches > 1 else ""
            rec.reasons.append(f"The batch leaves room for the CUDA graph (training.cuda_graphs), which replays "
                               f"each step in one launch (2-11x faster at the tiers' batch sizes){inside}; with "
                               f"graphs off, batch {ungraphed} would fit.")
        return
    tr.cuda_graphs = "off"
    why = ("not even batch 1 fits with the graph's extra memory" if not graphed else
           f"with the graph's extra memory only batch {graphed} would fit, and SegFormer trains poorly at batch 1")
    rec.warnings.append(f"No CUDA graph for this run: {why}, so batch {tr.batch_size} runs without it (2-3x "
                        "slower at these sizes). A smaller image size or model would leave room for it.")


def alternatives(rec: Recommendation, memory_model: MemoryModel) -> list[Alternative]:
    """Bigger settings that would also fit, offered with their cost instead of switched to silently.

    A larger model at the same size, and the same model at a larger image size, each at the largest
    batch that fits (at least 2 images: batch 1 trains poorly with SegFormer's normalisation).
    """
    tr, ds = rec.config.training, rec.config.dataset
    assert rec.budget_gb is not None
    out: list[Alternative] = []
    candidates = []
    index = VARIANTS.index(tr.variant)
    for bigger in VARIANTS[index + 1:index + 3]:
        candidates.append((f"a larger model: SegFormer-{bigger} at {ds.image_size} px", bigger, ds.image_size))
    for size in (ds.image_size + 64, ds.image_size + 128):
        candidates.append((f"larger images: SegFormer-{tr.variant} at {size} px", tr.variant, size))
    graphs = graphs_possible(rec.config)  # sized and reported as the plan would run them
    for description, variant, size in candidates:
        batch = largest_batch(memory_model, rec.config, rec.budget_gb, variant, size, graphs=graphs,
                              train_images=rec.train_images)
        if batch < 2:
            continue
        peak = predicted_peak(memory_model, rec.config, batch, variant, size, graphs=graphs,
                              train_images=rec.train_images)
        out.append(Alternative(description=description, variant=variant, batch_size=batch, image_size=size,
                               predicted_peak_gb=peak, note=_relative_cost(tr.variant, ds.image_size, tr.batch_size,
                                                                           variant, size, batch)))
    return out


def _relative_cost(variant: str, size: int, batch: int, alt_variant: str, alt_size: int, alt_batch: int) -> str:
    """Time per epoch relative to the recommendation, from the packaged reference throughput.

    Uses each model's best measured images/s (large batches: the memory-bound regime a fitted batch is
    in) scaled by image area; b1/b3, when not measured, take the geometric mean of their neighbours.
    """
    for ref in calibration().get("references", []):
        best: dict[str, float] = {}
        for m in ref.get("measurements", []):
            if m["batch_size"] < 16:  # small batches are launch-bound: not comparable across models
                continue
            ips = float(m["images_per_s"]) * (m["image_size"] / 288) ** 2  # per image at 288 px
            best[m["variant"]] = max(best.get(m["variant"], 0.0), ips)
        for mid, (lo, hi) in {"b1": ("b0", "b2"), "b3": ("b2", "b4")}.items():
            if mid not in best and lo in best and hi in best:
                best[mid] = (best[lo] * best[hi]) ** 0.5
        if variant in best and alt_variant in best:
            ratio = (best[variant] / best[alt_variant]) * (alt_size / size) ** 2
            return (f"about {ratio:.1f}x the time per epoch of the recommendation (from reference speeds "
                    f"measured on {ref.get('gpu', 'a reference GPU')})")
    return "time per epoch not estimated (no reference speed for these models)"


def _step_down(variant: str, size: int):
    """Smaller image first (cheaper in accuracy than a smaller model), then smaller models."""
    for s in (s for s in (256, 224, 192, 160, 128) if s < size):
        yield variant, s
    for v in reversed(VARIANTS[:VARIANTS.index(variant)]):
        for s in (size, 224, 128):
            yield v, s
