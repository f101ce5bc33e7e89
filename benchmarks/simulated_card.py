"""A smaller card simulated on one big GPU, as the fit and speed benchmarks need it.

Why a module of its own: ``bench_fit.py`` (does every plan fit?) and ``bench_cards.py`` (how fast is
every plan against the reference row?) must simulate a card the same way, or their numbers could not be
read side by side. A card of ``card_gb`` is:

* the process's allocator capped at the card minus the CUDA context (``cap_process``), so allocator +
  context = the card, as nvidia-smi would count it on the real card;
* a hardware snapshot with that card as its only GPU, all of it free (``card_snapshot``), so
  ``recommend`` plans with what a user of such a card gets: the tier, bf16 where the real GPU has it,
  and the CUDA graph where the plan allows it (a what-if ``vram_gb`` plan has no card to ask and falls
  back to fp16, which the graph does not use);
* the session's own memory check seeing the card's free memory, not the big GPU's
  (``pretend_free_memory``): the run re-checks its graph against free memory, and the big GPU's
  ~140 GB free would keep a graph the small card could not hold.
"""

from __future__ import annotations

import os
from typing import Any

GIB = 2**30


def card_snapshot(card_gb: float, compute_capability: tuple[int, int] | None, name: str = "simulated GPU") -> Any:
    """A snapshot with one idle card of ``card_gb`` (free = total: what a what-if plans for) and this machine's CPU.

    ``compute_capability`` decides bf16 (8.0 and newer) and so whether the graph can run; pass the real GPU's."""
    from medseg_gui.core.hardware import GpuInfo, cpu_only_snapshot

    snap = cpu_only_snapshot()
    gpu = GpuInfo(index=0, name=f"{name} capped to {card_gb:g} GB", total_gb=float(card_gb), free_gb=float(card_gb),
                  used_gb=0.0, compute_capability=compute_capability)
    gpu.cuda_index = 0  # the snapshot numbered no cards at construction: this one is CUDA's device 0
    snap.gpus = [gpu]
    return snap


def plan_for_card(card_gb: float, compute_capability: tuple[int, int] | None, base: Any) -> Any:
    """``recommend`` for a simulated card: the settings a user of that card gets from the app.

    ``training.gpus`` is cleared: the worker process sees only its own GPU as CUDA device 0, and the
    snapshot's card has no UUID to match against the real one (sizing does not depend on it)."""
    from medseg_gui.core.planning.recommend import recommend

    rec = recommend(card_snapshot(card_gb, compute_capability), base=base)
    rec.config.training.gpus = []
    rec.config.training.devices = 1
    return rec


def plan_summary(rec: Any) -> dict[str, Any]:
    """The plan's settings and predicted peak as the benchmarks' JSON records them."""
    from medseg_gui.core.planning import speed

    tr, ds = rec.config.training, rec.config.dataset
    graph = speed.plan_cuda_graphs(tr.cuda_graphs, on_cuda=tr.accelerator != "cpu", devices=1, precision=tr.precision,
                                   accumulate=tr.accumulate_grad_batches)
    return {"variant": tr.variant, "batch": tr.batch_size, "accumulate": tr.accumulate_grad_batches,
            "image_size": ds.image_size, "precision": tr.precision, "cuda_graphs": tr.cuda_graphs,
            "graph_planned": graph.enabled, "compile": tr.compile, "num_workers": tr.num_workers,
            "predicted_peak_gb": rec.predicted_peak_gb, "budget_gb": rec.budget_gb, "tier": rec.tier.name}


def step_probe() -> Any:
    """A Lightning callback that records what the module really ran: the whole-step CUDA graph or not,
    compiled or not (the attributes the session's own RunStarted prediction reads). A plan that
    says "graph" and a run that silently fell back must not look alike in the results."""
    import lightning as L

    class StepProbe(L.Callback):
        def __init__(self) -> None:
            self.seen: dict[str, Any] = {}

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            graph = getattr(module, "_step_graph", None)  # core/engine/step_graph.WholeStepGraph once built
            self.seen = {"graph_planned_by_session": bool(getattr(module, "cuda_graphs", False)),
                         "graph_captured": bool(graph is not None and getattr(graph, "captured", False)),
                         "compiled": bool(getattr(module, "compile_mode", None))}

    return StepProbe()


def cap_process(card_gb: float) -> dict[str, float | None]:
    """Initialise CUDA and cap this process's allocator at the card minus the calibrated CUDA context.

    Returns the context the memory model assumes and the one NVML sees for this process right after
    start-up (None where NVML cannot see processes, e.g. some containers), so a gap can be read."""
    import torch

    from medseg_gui.core.planning.memory import default_memory_model

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    model = default_memory_model()
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    torch.cuda.set_per_process_memory_fraction((card_gb - model.context_gb) / total)
    return {"context_model_gib": model.context_gb, "context_measured_gib": process_used_gib()}


def pretend_free_memory(card_gb: float) -> None:
    """Make the session's free-memory reading (``hardware.free_for_plan_gb``) the simulated card's.

    ``free_for_plan_gb`` counts what the card has free plus this process's own holding, i.e. the whole
    idle card; on the big GPU it would report ~140 GB and the session's graph check could never
    drop a graph that the small card cannot hold."""
    from medseg_gui.core import hardware

    hardware.free_for_plan_gb = lambda: float(card_gb)


def process_used_gib() -> float | None:
    """This process's memory as NVML reports it (what nvidia-smi shows), on whichever card it runs.

    Searches every card: under CUDA_VISIBLE_DEVICES=1 the process's device 0 is NVML's card 1."""
    try:
        import pynvml

        pynvml.nvmlInit()
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and isinstance(proc.usedGpuMemory, int):
                    return proc.usedGpuMemory / GIB
    except Exception:  # noqa: BLE001 — no NVML, or blind to processes: the figure is simply absent
        return None
    return None


def real_gpu_template() -> tuple[str, tuple[int, int] | None]:
    """(name, compute capability) of the first GPU NVML sees, without creating a CUDA context;
    ("no GPU", None) without one (the CPU dry run)."""
    from medseg_gui.core.hardware import probe

    gpus = probe().gpus
    if not gpus:
        return "no GPU", None
    return gpus[0].name, gpus[0].compute_capability


def repeating_datamodule_factory(steps: int):
    """The app's datamodule with its training set repeated to at least ``steps`` batches, and its
    validation set to at least one full batch.

    Why: the demo set holds a few hundred slices, fewer than a large card's batch times the steps a
    measurement needs; repeating the same files keeps the real loader (PNG decoding, augmentation).
    Validation runs at the training batch size, and its activations sit beside the training graph's
    pool: a validation set smaller than one batch (48 demo slices against batch 150 on an 80 GB card)
    would leave the peak a real dataset reaches unmeasured."""

    def factory(config: Any) -> Any:
        from medseg_gui.core.data.datamodule import build_datamodule

        dm = build_datamodule(config)
        dm.prepare()
        batch = config.training.batch_size
        for dataset, need in ((dm.train_dataset, steps * batch), (dm.val_dataset, batch)):
            if dataset is not None and dataset.pairs:
                times = max(1, -(-need // len(dataset.pairs)))
                dataset.pairs = dataset.pairs * times
                if dataset.cache is not None:  # decoded arrays (dataset.cache_images) follow the pairs
                    dataset.cache = tuple(t.repeat((times,) + (1,) * (t.ndim - 1)) for t in dataset.cache)
        return dm

    return factory
