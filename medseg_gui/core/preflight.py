"""The pre-flight checklist (the brief's 配置检查清单), checked before Start, in the wizard and by
``medseg preflight``.

Each item is a pure function of a ``PreflightFacts`` record, so every verdict — and the fix it
offers — is testable by injecting facts; only ``gather_facts`` touches torch, NVML and the dataset.
Statuses: "ok" (green), "warn" (amber: it runs, but slower or riskier than it should) and "fail"
(red: it will not run, or will run out of memory, as configured).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.hardware import GpuInfo, GpuProcess, HardwareSnapshot

HEADROOM_GB = 1.0  # the brief: at least 1 GB more VRAM than the configuration needs
OTHERS_NOTABLE_GB = 0.25
DESKTOP_PROCESSES = {"xorg", "xwayland", "gnome-shell", "kwin_x11", "kwin_wayland", "dwm.exe", "explorer.exe",
                     "windowserver", "plasmashell"}
STATUSES = ("ok", "warn", "fail")
PEAK_UNKNOWN = "predicted peak unknown"


@dataclass
class CheckItem:
    id: str
    title: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreflightFacts:
    """Everything the checks look at, gathered once (``gather_facts``) or made up in tests."""
    config: cfg.RunConfig
    os_name: str = field(default_factory=platform.system)
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    torch_version: str | None = None
    torch_cuda_build: str | None = None  # torch.version.cuda: None for a CPU-only wheel
    torch_cuda_available: bool = False
    torch_error: str | None = None  # torch could not be imported
    gpus: list[GpuInfo] = field(default_factory=list)  # what NVML sees
    gpu: GpuInfo | None = None  # the card the run will use
    nvml_error: str | None = None
    cuda_driver_version: str | None = None  # the newest CUDA the driver supports, e.g. "12.8"
    predicted_peak_gb: float | None = None  # as nvidia-smi would show it
    peak_note: str = ""  # why the prediction is unknown
    batch_fitting_free: int | None = None  # largest batch with the headroom in the free VRAM
    batch_fitting_card: int | None = None  # largest batch that fits the whole card with the headroom
    dataset_path: str = ""
    dataset_is_demo: bool = False
    dataset_exists: bool | None = None
    dataset_error: str | None = None  # the folder could not be read as a dataset
    dataset_can_train: bool | None = None
    dataset_verdict: str = ""
    dataset_pairs: dict[str, int] = field(default_factory=dict)  # usable pairs per split
    dataset_problems: int = 0
    dataset_warnings: list[str] = field(default_factory=list)
    pin_memory: bool | None = None  # what the loader will use


@dataclass
class PreflightReport:
    items: list[CheckItem]

    @property
    def ok(self) -> bool:
        """No red item: training may start."""
        return all(item.status != "fail" for item in self.items)

    @property
    def worst(self) -> str:
        return max((item.status for item in self.items), key=STATUSES.index, default="ok")

    def by_id(self, item_id: str) -> CheckItem:
        return next(item for item in self.items if item.id == item_id)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "worst": self.worst, "items": [item.to_dict() for item in self.items]}

    def text(self) -> str:
        marks = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]"}
        lines = []
        for item in self.items:
            lines.append(f"{marks[item.status]} {item.title}: {item.detail}")
            if item.fix and item.status != "ok":
                lines.append(f"       fix: {item.fix}")
        lines.append("Ready to train." if self.ok else "Not ready: fix the items marked FAIL.")
        return "\n".join(lines)


# ---- derived facts (pure) --------------------------------------------------------------------------

def runs_on_gpu(f: PreflightFacts) -> bool:
    """Where the run will train, as ``precision.resolve_accelerator`` decides."""
    acc = f.config.training.accelerator
    return acc == "gpu" or (acc == "auto" and f.torch_cuda_available)


def resolved_precision(f: PreflightFacts) -> str:
    """``precision.resolve_precision`` from the facts (the card's compute capability instead of torch)."""
    requested = f.config.training.precision
    if requested != "auto":
        return requested
    if not runs_on_gpu(f):
        return "32"
    return "bf16-mixed" if f.gpu is not None and f.gpu.supports_bf16 else "16-mixed"


def cuda_wheel_tag(driver_cuda: str | None) -> str | None:
    """The PyTorch wheel index (cuXYZ) for the newest CUDA the driver runs; None if the driver is too old."""
    try:
        major, minor = (int(x) for x in (driver_cuda or "").split(".")[:2])
    except ValueError:
        return "cu128"  # unknown driver: the current default CUDA build
    version = (major, minor)
    for tag, needed in (("cu130", (13, 0)), ("cu128", (12, 8)), ("cu126", (12, 6)), ("cu118", (11, 8))):
        if version >= needed:
            return tag
    return None


def torch_install_command(driver_cuda: str | None) -> str:
    tag = cuda_wheel_tag(driver_cuda) or "cu118"
    return f"pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{tag}"


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} GB"


def _mb(value: float | None) -> str:
    return "? MB" if value is None else f"{value * 1024:.0f} MB"


def _run_text(f: PreflightFacts) -> str:
    tr, ds = f.config.training, f.config.dataset
    return f"SegFormer-{tr.variant}, batch {tr.batch_size}, {ds.image_size} px"


# ---- the checks (pure) -----------------------------------------------------------------------------

def check_config(f: PreflightFacts) -> CheckItem:
    problems = cfg.validate(f.config)
    if problems:
        return CheckItem("config", "Settings are valid", "fail", "; ".join(str(p) for p in problems),
                         "correct the named settings")
    return CheckItem("config", "Settings are valid", "ok", "every setting is within its range")


def check_torch_gpu(f: PreflightFacts) -> CheckItem:
    title = "PyTorch can use the GPU"
    tr = f.config.training
    if f.torch_error:
        return CheckItem("torch_gpu", title, "fail", f"PyTorch cannot be imported: {f.torch_error}",
                         torch_install_command(f.cuda_driver_version) if f.gpus else "pip install torch")
    card = f.gpus[0].name if f.gpus else ""
    if f.gpus and not f.torch_cuda_build:
        return CheckItem("torch_gpu", title, "fail",
                         f"PyTorch {f.torch_version} is a CPU-only build, but an NVIDIA GPU ({card}) is installed: "
                         f"training would run on the CPU", torch_install_command(f.cuda_driver_version))
    if f.gpus and not f.torch_cuda_available:
        detail = (f"PyTorch {f.torch_version} (built for CUDA {f.torch_cuda_build}) cannot use {card}")
        if f.cuda_driver_version:
            detail += f"; the driver supports CUDA up to {f.cuda_driver_version}"
        return CheckItem("torch_gpu", title, "fail", detail,
                         "update the NVIDIA driver, or install the PyTorch build for this driver: "
                         + torch_install_command(f.cuda_driver_version))
    if not f.gpus and tr.accelerator == "gpu":
        why = f" ({f.nvml_error})" if f.nvml_error else ""
        return CheckItem("torch_gpu", title, "fail",
                         f"training.accelerator is 'gpu' but no NVIDIA GPU was found{why}",
                         "set training.accelerator = 'auto' (or 'cpu') to train on the CPU")
    if not f.gpus and not f.torch_cuda_available:
        why = f" ({f.nvml_error})" if f.nvml_error else ""
        return CheckItem("torch_gpu", title, "warn", f"no NVIDIA GPU{why}: training runs on the CPU, which is "
                         "10-100x slower", "for real datasets, train on a machine with an NVIDIA GPU")
    if tr.accelerator == "cpu":
        return CheckItem("torch_gpu", title, "warn", f"a GPU ({card or 'CUDA'}) is available but "
                         "training.accelerator is 'cpu'", "set training.accelerator = 'auto'")
    return CheckItem("torch_gpu", title, "ok", f"PyTorch {f.torch_version} with CUDA {f.torch_cuda_build} sees "
                     f"{f.gpu.name if f.gpu else card or 'the GPU'}")


def check_vram_headroom(f: PreflightFacts) -> CheckItem:
    title = f"At least {HEADROOM_GB:g} GB of VRAM to spare"
    if not runs_on_gpu(f):
        return CheckItem("vram_headroom", title, "ok", "not needed: training on the CPU")
    if f.predicted_peak_gb is None:
        return CheckItem("vram_headroom", title, "warn", PEAK_UNKNOWN + (f" ({f.peak_note})" if f.peak_note else ""),
                         "run the benchmark (medseg benchmark) to measure the peak VRAM of this configuration")
    if f.gpu is None or f.gpu.free_gb is None:
        return CheckItem("vram_headroom", title, "warn", f"the card does not report its free memory; the run "
                         f"needs about {_gb(f.predicted_peak_gb)}", "")
    headroom = f.gpu.free_gb - f.predicted_peak_gb
    detail = (f"{_run_text(f)} needs about {_gb(f.predicted_peak_gb)}; {_gb(f.gpu.free_gb)} is free, "
              f"leaving {headroom:+.1f} GB")
    if headroom >= HEADROOM_GB:
        return CheckItem("vram_headroom", title, "ok", detail)
    fix = (f"set training.batch_size = {f.batch_fitting_free} (with gradient accumulation for the same "
           f"effective batch), or close programs using the GPU" if f.batch_fitting_free
           else "choose a smaller model or image size, or close programs using the GPU")
    return CheckItem("vram_headroom", title, "fail" if headroom < 0 else "warn",
                     detail + (": it will run out of memory" if headroom < 0 else ""), fix)


def check_fits_card(f: PreflightFacts) -> CheckItem:
    title = "Batch size and model fit the card"
    if not runs_on_gpu(f):
        return CheckItem("fits_card", title, "ok", f"{_run_text(f)} on the CPU (limited by RAM, not VRAM)")
    if f.predicted_peak_gb is None:
        return CheckItem("fits_card", title, "warn", PEAK_UNKNOWN + (f" ({f.peak_note})" if f.peak_note else ""),
                         "use the recommended configuration, or run the benchmark to measure the peak")
    total = f.gpu.total_gb if f.gpu is not None else None
    if total is None:
        return CheckItem("fits_card", title, "warn", f"the card does not report its size; the run needs about "
                         f"{_gb(f.predicted_peak_gb)}", "")
    detail = f"{_run_text(f)} needs about {_gb(f.predicted_peak_gb)} of the card's {_gb(total)}"
    if f.predicted_peak_gb + HEADROOM_GB <= total:
        return CheckItem("fits_card", title, "ok", detail)
    if f.batch_fitting_card:
        fix = (f"set training.batch_size = {f.batch_fitting_card} and raise training.accumulate_grad_batches to "
               f"keep the effective batch")
    else:
        fix = "choose a smaller model variant or image size (even batch 1 does not fit this card)"
    return CheckItem("fits_card", title, "fail", detail + ": too big for this card", fix)


def check_mixed_precision(f: PreflightFacts) -> CheckItem:
    title = "Mixed precision where supported"
    precision = resolved_precision(f)
    gpu = f.gpu
    if runs_on_gpu(f):
        if precision == "32":
            return CheckItem("mixed_precision", title, "warn", "full fp32 on a GPU: about 2x slower and ~30% "
                             "more VRAM than mixed precision", "set training.precision = 'auto'")
        if precision == "bf16-mixed" and gpu is not None and gpu.compute_capability and not gpu.supports_bf16:
            cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
            return CheckItem("mixed_precision", title, "fail", f"bf16 is not supported natively on {gpu.name} "
                             f"(compute capability {cc}; bf16 needs 8.0)",
                             "set training.precision = 'auto' (fp16 with loss scaling on this card)")
        return CheckItem("mixed_precision", title, "ok", f"{precision} on the GPU")
    if precision in ("16-mixed", "bf16-mixed"):
        return CheckItem("mixed_precision", title, "warn", f"{precision} on the CPU is slower than fp32 for "
                         "SegFormer", "set training.precision = 'auto' (fp32 on the CPU)")
    return CheckItem("mixed_precision", title, "ok", "fp32 on the CPU (mixed precision does not help there)")


def _others(gpu: GpuInfo | None) -> list[GpuProcess]:
    return sorted(gpu.processes if gpu is not None else [], key=lambda p: -(p.used_gb or 0.0))


def check_other_processes(f: PreflightFacts) -> CheckItem:
    title = "No other programs using the GPU"
    if not runs_on_gpu(f) or f.gpu is None:
        return CheckItem("other_processes", title, "ok", "not applicable: no GPU in use")
    procs = _others(f.gpu)
    if not procs:
        return CheckItem("other_processes", title, "ok", "no other programs on the GPU")
    listed = ", ".join(f"{p.name or 'pid ' + str(p.pid)} (pid {p.pid}, {_mb(p.used_gb)})" for p in procs)
    total = sum(p.used_gb or 0.0 for p in procs)
    blocking = [p for p in procs if (p.name or "").lower() not in DESKTOP_PROCESSES]
    close = ", ".join(sorted({p.name or f"pid {p.pid}" for p in blocking})) or "them"
    free, peak, card = f.gpu.free_gb, f.predicted_peak_gb, f.gpu.total_gb
    if (peak is not None and free is not None and card is not None
            and free < peak + HEADROOM_GB <= card and blocking):
        return CheckItem("other_processes", title, "fail",
                         f"other programs hold {total:.1f} GB ({listed}); {_gb(free)} is left but the run needs "
                         f"{_gb(peak)} plus {HEADROOM_GB:g} GB headroom", f"close {close} before training")
    notable = [p for p in blocking if (p.used_gb or 0.0) >= OTHERS_NOTABLE_GB]
    if notable:
        return CheckItem("other_processes", title, "warn", f"other programs use the GPU: {listed}",
                         f"close {close} for more memory and speed")
    return CheckItem("other_processes", title, "ok", f"only small users: {listed}")


def recommended_workers(f: PreflightFacts) -> int:
    if f.os_name == "Windows":
        return 0
    return max(0, min(4, f.cpu_count - 1))


def check_workers(f: PreflightFacts) -> CheckItem:
    title = "Data-loading workers suit this computer"
    n = f.config.training.num_workers
    best = recommended_workers(f)
    if f.os_name == "Windows" and n > 0:
        return CheckItem("workers", title, "fail", f"{n} workers on Windows: each one re-imports the app in a new "
                         "process, which is slow and can fail", "set training.num_workers = 0 (and turn on "
                         "dataset.cache_images if loading is slow)")
    if n > f.cpu_count:
        return CheckItem("workers", title, "warn", f"{n} workers for {f.cpu_count} CPU cores: they compete with "
                         "each other and with training", f"set training.num_workers = {best}")
    if n == 0 and f.os_name != "Windows" and runs_on_gpu(f) and best >= 2:
        return CheckItem("workers", title, "warn", "0 workers: images are decoded on the training thread while "
                         "the GPU waits", f"set training.num_workers = {best}")
    return CheckItem("workers", title, "ok", f"{n} workers ({f.cpu_count} CPU cores, {f.os_name})")


def check_pinned_memory(f: PreflightFacts) -> CheckItem:
    title = "Pinned memory for GPU transfers"
    if not runs_on_gpu(f):
        return CheckItem("pinned_memory", title, "ok", "not used: training on the CPU")
    if f.pin_memory:
        return CheckItem("pinned_memory", title, "ok", "on: batches are copied to the GPU from page-locked memory")
    return CheckItem("pinned_memory", title, "warn", "off for a GPU run: each host-to-GPU copy goes through an "
                     "extra staging buffer", "leave the data module's pin_memory at its default (on for GPU runs)")


def check_dataset(f: PreflightFacts) -> CheckItem:
    title = "Dataset present and valid"
    if f.dataset_is_demo:
        return CheckItem("dataset", title, "ok", "the built-in synthetic demo dataset (made on first use)")
    path = f.dataset_path
    if f.dataset_exists is False:
        return CheckItem("dataset", title, "fail", f"{path} does not exist",
                         "choose the dataset folder in dataset.path, or import one with `medseg data import`")
    if f.dataset_error:
        return CheckItem("dataset", title, "fail", f"{path}: {f.dataset_error}",
                         f"run `medseg data check {path}` for the full report")
    if f.dataset_can_train is False:
        return CheckItem("dataset", title, "fail", f"{path}: {f.dataset_verdict}",
                         f"run `medseg data check {path}` and fix the listed files")
    if f.dataset_can_train is None:
        return CheckItem("dataset", title, "warn", f"{path} was not checked", f"run `medseg data check {path}`")
    pairs = ", ".join(f"{split} {n}" for split, n in f.dataset_pairs.items())
    if f.dataset_problems or f.dataset_warnings:
        parts = []
        if f.dataset_problems:
            parts.append(f"{f.dataset_problems} bad file(s) will be skipped")
        parts.extend(f.dataset_warnings[:2])
        return CheckItem("dataset", title, "warn", f"{pairs} usable pairs; " + "; ".join(parts),
                         f"run `medseg data check {path}` to see the files")
    return CheckItem("dataset", title, "ok", f"{pairs} usable pairs")


CHECKS: list[Callable[[PreflightFacts], CheckItem]] = [
    check_config, check_torch_gpu, check_vram_headroom, check_dataset, check_fits_card, check_mixed_precision,
    check_other_processes, check_workers, check_pinned_memory]


def run_checks(facts: PreflightFacts) -> PreflightReport:
    return PreflightReport([check(facts) for check in CHECKS])


# ---- gathering the facts (touches torch, NVML, the dataset) ----------------------------------------

def _default_memory_model() -> tuple[Any, str]:
    """The lead's memory model if it is there; otherwise no prediction, said plainly."""
    try:
        from medseg_gui.core.memory import default_memory_model  # type: ignore[import-not-found]

        model = default_memory_model()
        return model, "" if model is not None else "no memory model available (not calibrated yet)"
    except Exception as exc:  # noqa: BLE001 — ImportError now; any failure must not block the checklist
        return None, f"no memory model available ({type(exc).__name__})"


def _training_gpu(snapshot: HardwareSnapshot, torch_mod: Any) -> GpuInfo | None:
    """The card torch's device 0 is (CUDA_VISIBLE_DEVICES reorders), by UUID; else the only/most-free one."""
    if not snapshot.gpus:
        return None
    if torch_mod is not None:
        try:
            if torch_mod.cuda.is_available():
                uuid = str(torch_mod.cuda.get_device_properties(torch_mod.cuda.current_device()).uuid)
                for gpu in snapshot.gpus:
                    if gpu.uuid and gpu.uuid.endswith(uuid):
                        return gpu
        except Exception:  # noqa: BLE001
            pass
    from medseg_gui.core.hardware import select_gpu

    return select_gpu(snapshot)


def gather_facts(config: cfg.RunConfig, *, memory_model: Any = "default", snapshot: HardwareSnapshot | None = None,
                 report: Any = None, check_dataset_files: bool = True, mask_sample: int | None = 200) -> PreflightFacts:
    """Read torch's build, NVML (with other processes), the memory model's prediction and the dataset.

    ``memory_model``: a ``recommend.MemoryModel``, None for "unknown", or "default" for the lead's model
    (``core.memory.default_memory_model``) when it exists. ``report``: a validation report already made.
    Seconds at most (the dataset check decodes ``mask_sample`` masks); run it off the GUI thread.
    """
    from medseg_gui.core.hardware import probe

    f = PreflightFacts(config=config.copy())
    torch_mod = None
    try:
        import torch as torch_mod  # noqa: PLC0415

        f.torch_version = torch_mod.__version__
        f.torch_cuda_build = torch_mod.version.cuda
        f.torch_cuda_available = bool(torch_mod.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 — a broken install is exactly what this check reports
        f.torch_error = f"{type(exc).__name__}: {exc}"
    snap = snapshot if snapshot is not None else probe(with_processes=True)
    f.os_name, f.cpu_count = snap.os_name, snap.cpu_count
    f.gpus, f.nvml_error, f.cuda_driver_version = list(snap.gpus), snap.nvml_error, snap.cuda_driver_version
    f.gpu = _training_gpu(snap, torch_mod)
    tr = f.config.training
    f.pin_memory = tr.accelerator != "cpu" and f.torch_cuda_available  # the DataModule's rule
    _predict(f, memory_model)
    _dataset_facts(f, report, check_dataset_files, mask_sample)
    return f


def _predict(f: PreflightFacts, memory_model: Any) -> None:
    if memory_model == "default":
        memory_model, note = _default_memory_model()
    else:
        note = "" if memory_model is not None else "no memory model given"
    if memory_model is None or not runs_on_gpu(f):
        f.peak_note = note
        return
    from medseg_gui.core.recommend import largest_batch, predicted_peak

    query_config = f.config.copy()
    query_config.training.precision = resolved_precision(f)
    tr, ds = query_config.training, query_config.dataset
    try:
        f.predicted_peak_gb = float(predicted_peak(memory_model, query_config))
        if f.gpu is not None and f.gpu.free_gb is not None:
            f.batch_fitting_free = largest_batch(memory_model, query_config, f.gpu.free_gb - HEADROOM_GB,
                                                 tr.variant, ds.image_size) or None
        if f.gpu is not None and f.gpu.total_gb is not None:
            f.batch_fitting_card = largest_batch(memory_model, query_config, f.gpu.total_gb - HEADROOM_GB,
                                                 tr.variant, ds.image_size) or None
    except Exception as exc:  # noqa: BLE001 — a model that cannot answer leaves the peak unknown
        f.predicted_peak_gb = None
        f.peak_note = f"the memory model failed ({type(exc).__name__}: {exc})"


def _dataset_facts(f: PreflightFacts, report: Any, check_files: bool, mask_sample: int | None) -> None:
    ds, tr = f.config.dataset, f.config.training
    f.dataset_path = ds.path
    if ds.path.strip().lower() == "demo":
        f.dataset_is_demo = True
        return
    root = Path(ds.path).expanduser()
    f.dataset_exists = root.is_dir()
    if not f.dataset_exists or (report is None and not check_files):
        return
    try:
        if report is None:
            from medseg_gui.core.data.validate import validate_dataset

            report = validate_dataset(root, ds.num_classes, class_names=ds.class_names,
                                      val_fraction=ds.val_fraction, seed=tr.seed, mask_sample=mask_sample)
    except Exception as exc:  # noqa: BLE001 — DatasetLayoutError and unreadable folders, said in words
        f.dataset_error = str(exc)
        return
    f.dataset_can_train = bool(report.can_train)
    f.dataset_verdict = report.verdict
    f.dataset_pairs = {"train": report.pairs_usable.get("train", 0), "valid": report.pairs_usable.get("valid", 0)}
    f.dataset_problems = len(report.problems)
    f.dataset_warnings = list(report.warnings)


def preflight(config: cfg.RunConfig, **kwargs: Any) -> PreflightReport:
    """Gather the facts for ``config`` and run every check (see ``gather_facts`` for the options)."""
    return run_checks(gather_facts(config, **kwargs))
