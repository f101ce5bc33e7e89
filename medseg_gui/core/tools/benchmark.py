"""GPU benchmark and the time a run will take on this dataset.

A common benchmark snippet times raw forward/backward on its own; here we time the *real* training steps
of the configuration the user is about to start (same LightningModule, loader, precision, through
Lightning), on the user's own data and card, after a few warm-up steps (cuDNN autotuning, worker
start-up, allocator growth). The figures — images/s, ms per step, peak VRAM — become an estimated
time per epoch and for the whole run for this dataset, which is what a user actually wants to know.

Before anything has been measured on this card, ``estimate_from_bandwidth`` scales reference
figures measured on another GPU (``calibration/throughput.json``) by the ratio of memory bandwidths
(SegFormer training at large batches is memory-bound) and labels the result an *estimate*.

Measured results are cached per device + configuration as JSON under ``paths.cache_dir("benchmark")``
so the GUI can show the last measurement beside the recommendation without re-running it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core import hardware
from medseg_gui.core.atomic import atomic_write_text
from medseg_gui.core.engine.diagnosis import DiagContext, DiagSample, StepTimer, diagnose
from medseg_gui.core.hardware import GpuInfo
from medseg_gui.core.paths import cache_dir
from medseg_gui.core.planning.precision import resolve_accelerator, resolve_precision
from medseg_gui.core.planning.throughput import calibration
from medseg_gui.core.engine.parts import free_cuda
from medseg_gui.core.engine.quiet import quiet_lightning
from medseg_gui.core.tools.trial_run import (DatamoduleFactory, Progress, ToolCancelled, ToolError, build_parts,
                                             dataset_sizes, scratch_dir, trainer_kwargs)
from medseg_gui.core.words import format_duration, plural

VAL_SPEEDUP_GUESS = 3.0  # forward only vs forward+backward+update, when validation was not measured
CACHE_FORMAT = 1


@dataclass
class TimeEstimate:
    """How long this configuration takes on this dataset, from a measured or estimated speed."""
    train_images: int
    val_images: int
    epochs: int
    steps_per_epoch: int
    train_s_per_epoch: float
    val_s_per_epoch: float
    epoch_s: float
    run_s: float

    def text(self) -> str:
        return (f"{format_duration(self.epoch_s)} per epoch ({self.steps_per_epoch} steps + validation of "
                f"{self.val_images} images), {format_duration(self.run_s)} for {plural(self.epochs, 'epoch')}")


@dataclass
class BenchmarkResult:
    kind: str  # "measured" | "estimate"
    device: str
    variant: str
    batch_size: int
    image_size: int
    precision: str
    images_per_s: float
    ms_per_step: float
    val_images_per_s: float | None = None
    peak_vram_gb: float | None = None  # torch.cuda.max_memory_reserved: this process's allocator pool
    peak_allocated_gb: float | None = None
    device_used_gb: float | None = None  # the whole card as nvidia-smi shows it (NVML), at the end
    steps: int = 0
    warmup_steps: int = 0
    data_wait_share: float | None = None
    bottleneck: str | None = None
    basis: str = ""  # what the figures rest on, in words (shown next to an estimate)
    created: float = dataclasses.field(default_factory=time.time)
    time: TimeEstimate | None = None

    @property
    def label(self) -> str:
        return "measured" if self.kind == "measured" else "estimate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkResult":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("time"), dict):
            values["time"] = TimeEstimate(**values["time"])
        return cls(**values)

    def with_time(self, config: cfg.RunConfig, train_images: int, val_images: int) -> "BenchmarkResult":
        out = dataclasses.replace(self)
        out.time = estimate_time(self, config, train_images, val_images)
        return out

    def summary(self) -> str:
        """Lines for the CLI and the GUI, the label first so an estimate is never mistaken for a measurement."""
        head = (f"{self.label}: {self.images_per_s:.1f} images/s, {self.ms_per_step:.0f} ms per step "
                f"(SegFormer-{self.variant}, batch {self.batch_size}, {self.image_size} px, {self.precision}) "
                f"on {self.device}")
        lines = [head]
        if self.peak_vram_gb is not None:
            vram = f"peak VRAM {self.peak_vram_gb:.2f} GB reserved by PyTorch"
            if self.device_used_gb is not None:
                vram += f", {self.device_used_gb:.2f} GB used on the card (nvidia-smi)"
            lines.append(vram)
        if self.data_wait_share is not None:
            lines.append(f"{100 * self.data_wait_share:.0f}% of step time waiting for data"
                         + (f" (bottleneck: {self.bottleneck})" if self.bottleneck else ""))
        if self.time is not None:
            lines.append("estimated time: " + self.time.text())
        if self.basis:
            lines.append(self.basis)
        return "\n".join(lines)


def steps_per_epoch(train_images: int, batch_size: int, max_steps_per_epoch: int = 0) -> int:
    """Training batches per epoch as the loader makes them (drop_last once the set holds a full batch)."""
    if train_images <= 0:
        return 0
    steps = train_images // batch_size if train_images >= batch_size else 1
    if max_steps_per_epoch:
        steps = min(steps, max_steps_per_epoch)
    return steps


def estimate_time(result: BenchmarkResult, config: cfg.RunConfig, train_images: int,
                  val_images: int) -> TimeEstimate:
    """Per-epoch and whole-run time: training steps at the measured step time plus one validation pass."""
    tr = config.training
    steps = steps_per_epoch(train_images, result.batch_size, tr.max_steps_per_epoch)
    train_s = steps * result.ms_per_step / 1000
    val_ips = result.val_images_per_s or result.images_per_s * VAL_SPEEDUP_GUESS
    val_s = val_images / val_ips if val_ips > 0 else 0.0
    epoch_s = train_s + val_s
    return TimeEstimate(train_images=train_images, val_images=val_images, epochs=tr.epochs, steps_per_epoch=steps,
                        train_s_per_epoch=train_s, val_s_per_epoch=val_s, epoch_s=epoch_s,
                        run_s=epoch_s * tr.epochs)


# ---- the estimate before any measurement ---------------------------------------------------------

def _nearest_variant(measurements: list[dict[str, Any]], variant: str) -> str | None:
    """The variant itself if measured, else the nearest one (ties: the larger, slower model — cautious)."""
    measured = {m["variant"] for m in measurements if m.get("variant") in cfg.VARIANTS}
    if not measured:
        return None
    want = cfg.VARIANTS.index(variant) if variant in cfg.VARIANTS else 0
    return min(measured, key=lambda v: (abs(cfg.VARIANTS.index(v) - want), -cfg.VARIANTS.index(v)))


def reference_speed(reference: dict[str, Any], variant: str, batch: int, size: int, compiled: bool,
                    bandwidth_gbs: float) -> tuple[float, str] | None:
    """Images/s expected on a card of ``bandwidth_gbs`` and how it was derived, from one reference card.

    Two limits, the lower wins (small eager batches are launch-bound, large ones memory-bound):
    * launch-bound: the reference's time per step at the nearest measured batch, which depends on the
      host and the number of kernels, not on the card or the image size → images/s grows with batch;
    * memory-bound: the reference's best images/s for the model, × bandwidth ratio × image-area ratio.
    """
    pool = [m for m in reference.get("measurements", []) if bool(m.get("compiled")) == compiled]
    pool = pool or list(reference.get("measurements", []))
    v = _nearest_variant(pool, variant)
    ref_bw = float(reference.get("bandwidth_gbs") or 0)
    if v is None or ref_bw <= 0:
        return None
    entries = [m for m in pool if m["variant"] == v]
    near = min(entries, key=lambda m: (abs(math.log(m["batch_size"] / batch)), abs(m["image_size"] - size)))
    launch = float(near["images_per_s"]) * batch / near["batch_size"]
    top = max(entries, key=lambda m: m["images_per_s"] * (m["image_size"] / size) ** 2)
    memory = float(top["images_per_s"]) * (top["image_size"] / size) ** 2 * bandwidth_gbs / ref_bw
    card = reference.get("gpu", "the reference GPU")
    variant_note = "" if v == variant else f" (SegFormer-{variant} not measured; using {v})"
    if launch <= memory:
        why = (f"launch-bound: {near['images_per_s']:g} images/s at SegFormer-{v} batch {near['batch_size']}, "
               f"{near['image_size']} px on {card}, per-step time kept for batch {batch}; the memory limit "
               f"would allow {memory:.0f} images/s")
    else:
        why = (f"memory-bound: {top['images_per_s']:g} images/s at SegFormer-{v} batch {top['batch_size']}, "
               f"{top['image_size']} px on {card}, x bandwidth {bandwidth_gbs:.0f} / {ref_bw:.0f} GB/s"
               + (f" x image area {top['image_size']}² / {size}²" if top["image_size"] != size else ""))
    recipe = near.get("recipe") if launch <= memory else top.get("recipe")
    return min(launch, memory), why + variant_note + (f"; recipe: {recipe}" if recipe else "")


def estimate_from_bandwidth(gpu: GpuInfo | None, config: cfg.RunConfig, train_images: int | None = None,
                            val_images: int | None = None,
                            reference: dict[str, Any] | None = None) -> BenchmarkResult | None:
    """Images/s for ``config`` on ``gpu`` from reference measurements on another card, scaled by memory
    bandwidth (see ``reference_speed``) and labelled "estimate". None on the CPU or when the card does
    not report its bus width and memory clock.
    """
    if gpu is None or not gpu.memory_bandwidth_gbs:
        return None
    tr, ds = config.training, config.dataset
    refs = [reference] if reference is not None else calibration().get("references", [])
    compiled = tr.compile == "on"
    # a reference measured the same way (eager or compiled) first; otherwise the file's order
    refs = sorted(refs, key=lambda r: not any(bool(m.get("compiled")) == compiled for m in r.get("measurements", [])))
    for ref in refs:
        speed = reference_speed(ref, tr.variant, tr.batch_size, ds.image_size, compiled,
                                gpu.memory_bandwidth_gbs)
        if speed is None:
            continue
        ips, why = speed
        basis = f"estimate ({why}). Run the benchmark to measure it on this card."
        result = BenchmarkResult(kind="estimate", device=gpu.name, variant=tr.variant, batch_size=tr.batch_size,
                                 image_size=ds.image_size, precision=tr.precision, images_per_s=ips,
                                 ms_per_step=1000 * tr.batch_size / ips, basis=basis)
        if train_images:
            result.time = estimate_time(result, config, train_images, val_images or 0)
        return result
    return None


# ---- cache ---------------------------------------------------------------------------------------

def cache_key(config: cfg.RunConfig, device: str) -> str:
    """Everything that changes the speed: the card, the model and batch, precision, the loader, the data."""
    tr, ds = config.training, config.dataset
    fields = {"format": CACHE_FORMAT, "device": device, "variant": tr.variant, "batch_size": tr.batch_size,
              "accumulate": tr.accumulate_grad_batches, "image_size": ds.image_size, "num_classes": ds.num_classes,
              "precision": tr.precision, "channels_last": tr.channels_last, "compile": tr.compile,
              "num_workers": tr.num_workers, "cache_images": ds.cache_images, "dataset": _dataset_id(ds.path)}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def _dataset_id(path: str) -> str:
    if path.strip().lower() == "demo":
        return "demo"
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def _cache_file(config: cfg.RunConfig, device: str) -> Path:
    return cache_dir("benchmark") / f"{cache_key(config, device)}.json"


def save_cached(config: cfg.RunConfig, result: BenchmarkResult) -> Path:
    return atomic_write_text(_cache_file(config, result.device), json.dumps(result.to_dict(), indent=1))


def load_cached(config: cfg.RunConfig, device: str) -> BenchmarkResult | None:
    """The last measurement of this configuration on this device, or None (missing or unreadable)."""
    path = _cache_file(config, device)
    try:
        return BenchmarkResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def device_label(gpu: GpuInfo | None) -> str:
    """The cache's device name as the GUI can know it without torch: the NVML name, or 'cpu'."""
    return gpu.name if gpu is not None else "cpu"


def known_speed(config: cfg.RunConfig, gpu: GpuInfo | None, train_images: int | None = None,
                val_images: int | None = None) -> BenchmarkResult | None:
    """What to show beside the recommendation: the cached measurement if any, else the bandwidth estimate."""
    measured = load_cached(config, device_label(gpu))
    if measured is not None:
        if train_images:
            measured = measured.with_time(config, train_images, val_images or 0)
        return measured
    return estimate_from_bandwidth(gpu, config, train_images, val_images)


# ---- the measurement -----------------------------------------------------------------------------

def _device_name(accelerator: str) -> str:
    if accelerator != "gpu":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(torch.cuda.current_device())


def _card_used_gb() -> float | None:
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        gpus = hardware.probe().gpus
        match = [g for g in gpus if g.uuid and g.uuid.endswith(uuid)] or (gpus if len(gpus) == 1 else [])
        return match[0].used_gb if match else None
    except Exception:  # noqa: BLE001 — NVML is optional here
        return None


def _timing_callbacks(warmup: int, steps: int, cuda: bool, progress: Progress | None,
                      stop_event: threading.Event | None) -> tuple[Any, Any]:
    import lightning as L

    def sync() -> None:
        if cuda:
            import torch

            torch.cuda.synchronize()

    total = warmup + steps

    class TrainTimer(L.Callback):
        """Wall time of the measured steps (device synchronised at both ends) and the data-wait split."""

        def __init__(self) -> None:
            self.seen = 0
            self.t0 = self.t1 = None
            self.timer = StepTimer()
            self.split = (0, 0.0, 0.0)
            self.card_used_gb = None
            self.cancelled = False

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.timer.epoch_start()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.timer.batch_start()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.timer.batch_end()
            self.seen += 1
            if progress is not None:
                progress(self.seen, total)
            if stop_event is not None and stop_event.is_set():
                self.cancelled = True
                trainer.should_stop = True
                return
            if self.seen == warmup:
                sync()
                self.timer.take()
                self.t0 = time.perf_counter()
            elif self.seen == total:
                sync()
                self.t1 = time.perf_counter()
                self.split = self.timer.take()
                if cuda:
                    self.card_used_gb = _card_used_gb()
                trainer.should_stop = True

    class ValTimer(L.Callback):
        """Validation batches after the first (which pays for the loader's start)."""

        def __init__(self) -> None:
            self.start = 0.0
            self.seconds = 0.0
            self.images = 0

        def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                      dataloader_idx: int = 0) -> None:
            sync()
            self.start = time.perf_counter()

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                    dataloader_idx: int = 0) -> None:
            sync()
            if batch_idx > 0:
                self.seconds += time.perf_counter() - self.start
                self.images += int(batch[0].shape[0])

    return TrainTimer(), ValTimer()


def run_benchmark(config: cfg.RunConfig, *, steps: int = 20, warmup: int = 5, val_batches: int = 5,
                  datamodule_factory: DatamoduleFactory | None = None, progress: Progress | None = None,
                  stop_event: threading.Event | None = None, save: bool = True) -> BenchmarkResult:
    """Time ``steps`` real training steps (after ``warmup``) and a few validation batches of ``config``.

    Returns the measured result with its time estimate for the configured dataset and epochs; stores
    it in the cache when ``save``. Raises ToolError (bad config, empty dataset), ToolCancelled.
    """
    import lightning as L

    if steps < 1 or warmup < 1:
        raise ValueError("steps and warmup must be at least 1")
    parts = build_parts(config, datamodule_factory)
    L.seed_everything(parts.config.training.seed, verbose=False)
    cuda = parts.accelerator == "gpu"
    try:
        device = _device_name(parts.accelerator)
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        train_timer, val_timer = _timing_callbacks(warmup, steps, cuda, progress, stop_event)
        with scratch_dir("benchmark") as root, quiet_lightning(trial=True):
            trainer = L.Trainer(**trainer_kwargs(parts, root, max_epochs=-1, max_steps=warmup + steps,
                                                 limit_val_batches=0, callbacks=[train_timer]))
            trainer.fit(parts.module, datamodule=parts.datamodule)
            if train_timer.cancelled:
                raise ToolCancelled("benchmark cancelled")
            if train_timer.t1 is None or train_timer.t0 is None:
                raise ToolError(f"the benchmark ran only {train_timer.seen} of {warmup + steps} training batches; "
                                "check that the dataset has training images (medseg data check)")
            peak_reserved = peak_allocated = None
            if cuda:
                import torch

                peak_reserved = torch.cuda.max_memory_reserved() / 1024**3
                peak_allocated = torch.cuda.max_memory_allocated() / 1024**3
            if val_batches > 0:
                validator = L.Trainer(**trainer_kwargs(parts, root, limit_val_batches=val_batches + 1,
                                                       callbacks=[val_timer]))
                validator.validate(parts.module, datamodule=parts.datamodule, verbose=False)
        train_images, val_images = dataset_sizes(parts.datamodule)
    finally:
        tr_cfg = parts.config
        del parts
        free_cuda()
    elapsed = train_timer.t1 - train_timer.t0
    batch = tr_cfg.training.batch_size
    n_steps, wait, compute = train_timer.split
    verdict = diagnose([DiagSample(steps=n_steps, data_wait_s=wait, compute_s=compute,
                                   device="gpu" if cuda else "cpu")],
                       DiagContext(num_workers=tr_cfg.training.num_workers)) if n_steps else None
    result = BenchmarkResult(
        kind="measured", device=device, variant=tr_cfg.training.variant, batch_size=batch,
        image_size=tr_cfg.dataset.image_size, precision=_resolved_precision(tr_cfg),
        images_per_s=steps * batch / elapsed, ms_per_step=1000 * elapsed / steps,
        val_images_per_s=val_timer.images / val_timer.seconds if val_timer.seconds > 0 else None,
        peak_vram_gb=peak_reserved, peak_allocated_gb=peak_allocated, device_used_gb=train_timer.card_used_gb,
        steps=steps, warmup_steps=warmup, data_wait_share=verdict.data_wait_share if verdict else None,
        bottleneck=verdict.bottleneck if verdict else None,
        basis=f"measured: {steps} training steps after {warmup} warm-up steps on this machine's data")
    result.time = estimate_time(result, tr_cfg, train_images, val_images)
    if save:
        save_cached(tr_cfg, result)
    return result


def _resolved_precision(config: cfg.RunConfig) -> str:
    return resolve_precision(config.training.precision, resolve_accelerator(config.training.accelerator))
