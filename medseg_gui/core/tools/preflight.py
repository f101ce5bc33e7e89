"""The pre-flight checklist, checked before Start, in the wizard and by
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
from medseg_gui.core.config_checks import field_label
from medseg_gui.core.data.validate import summary_for_recommendation, validate_dataset
from medseg_gui.core.gpu_identity import GpuSelectionError, choose_gpus, device_count, short_uuid
from medseg_gui.core import hardware
from medseg_gui.core.hardware import GpuInfo, GpuProcess, HardwareSnapshot
from medseg_gui.core.planning.memory import default_memory_model
from medseg_gui.core.planning.precision import precision_for
from medseg_gui.core.planning.recommend import largest_batch, predicted_peak
from medseg_gui.core.planning.weights import hub_reachable, offline_by_environment, pretrained_availability
from medseg_gui.core.words import plural

HEADROOM_GB = 1.0  # at least 1 GB more VRAM than the configuration needs (other programs, fragmentation)
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
    applies: bool = True  # False: nothing to check on this machine/run (shown grey, "n/a", never a green tick)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A green item whose detail starts so has nothing to check here (e.g. VRAM headroom on a CPU run).
NOT_APPLICABLE_PREFIXES = ("not applicable", "not needed", "not used")


def mark_not_applicable(item: CheckItem) -> CheckItem:
    if item.status == "ok" and item.detail.lower().startswith(NOT_APPLICABLE_PREFIXES):
        item.applies = False
    return item


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
    gpu: GpuInfo | None = None  # the card the run will use (of several: the one with the least free memory)
    train_gpus: list[GpuInfo] = field(default_factory=list)  # every card the run will use (training.gpus)
    gpu_error: str | None = None  # training.gpus names a card CUDA cannot see
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
    pretrained: Any = None  # weights.PretrainedAvailability: where the initial weights would come from


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
            lines.append(f"{marks[item.status] if item.applies else '[ n/a]'} {item.title}: {item.detail}")
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
    """``precision.precision_for`` from the facts (the card's compute capability instead of torch)."""
    return precision_for(f.config.training.precision, on_gpu=runs_on_gpu(f),
                         bf16=f.gpu is not None and f.gpu.supports_bf16)


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


def _card(gpu: GpuInfo) -> str:
    """"GPU 1 NVIDIA H200": the CUDA ordinal training uses (core/gpu_identity.py), and the name."""
    return f"GPU {gpu.cuda_index} {gpu.name}" if gpu.cuda_index is not None else gpu.name


def _run_text(f: PreflightFacts) -> str:
    tr, ds = f.config.training, f.config.dataset
    return f"SegFormer-{tr.variant}, batch {tr.batch_size}, {ds.image_size} px"


# ---- the checks (pure) -----------------------------------------------------------------------------

def check_config(f: PreflightFacts) -> CheckItem:
    problems = cfg.validate(f.config)
    if problems:
        named = "; ".join(f"{field_label(p.field)} ({p.field}): {p.reason}" if p.field else p.reason
                          for p in problems)  # the form's label for people, the key for config files
        return CheckItem("config", "Settings are valid", "fail", named,
                         "correct the named settings (marked in red on the Configuration page)")
    return CheckItem("config", "Settings are valid", "ok", "every setting is within its range")


def check_torch_gpu(f: PreflightFacts) -> CheckItem:
    title = "PyTorch can use the GPU"
    tr = f.config.training
    if f.torch_error:
        return CheckItem("torch_gpu", title, "fail", f"PyTorch cannot be imported: {f.torch_error}",
                         torch_install_command(f.cuda_driver_version) if f.gpus else "pip install torch")
    card = (f.gpu or f.gpus[0]).name if f.gpus else ""  # the card that trains, when known
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
    where = f" on {_card(f.gpu)}" + (" (the one with the least free memory)" if len(f.train_gpus) > 1 else "")
    detail = (f"{_run_text(f)} needs about {_gb(f.predicted_peak_gb)}{' per GPU' if len(f.train_gpus) > 1 else ''}; "
              f"{_gb(f.gpu.free_gb)} is free{where}, leaving {headroom:+.1f} GB")
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
        return CheckItem("workers", title, "fail", f"{plural(n, 'worker')} on Windows: each one re-imports the app in a new "
                         "process, which is slow and can fail", "set training.num_workers = 0 (and turn on "
                         "dataset.cache_images if loading is slow)")
    if n > f.cpu_count:
        return CheckItem("workers", title, "warn", f"{plural(n, 'worker')} for {plural(f.cpu_count, 'CPU core')}: they compete with "
                         "each other and with training", f"set training.num_workers = {best}")
    if n == 0 and f.os_name != "Windows" and runs_on_gpu(f) and best >= 2:
        return CheckItem("workers", title, "warn", "0 workers: images are decoded on the training thread while "
                         "the GPU waits", f"set training.num_workers = {best}")
    return CheckItem("workers", title, "ok", f"{plural(n, 'worker')} ({plural(f.cpu_count, 'CPU core')}, {f.os_name})")


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
                         "choose an existing folder with Browse… beside Dataset on the Configuration page, or import "
                         "your data with File → New training wizard (command line: medseg data import)")
    if f.dataset_error:
        return CheckItem("dataset", title, "fail", f"{path}: {f.dataset_error}",
                         f"see the report in the wizard's Check step, or run: medseg data check {path}")
    if f.dataset_can_train is False:
        return CheckItem("dataset", title, "fail", f"{path}: {f.dataset_verdict}",
                         f"fix the files the wizard's Check step lists (or: medseg data check {path})")
    if f.dataset_can_train is None:
        return CheckItem("dataset", title, "warn", f"{path} was not checked",
                         f"check it in the wizard's Check step, or run: medseg data check {path}")
    pairs = ", ".join(f"{split} {n}" for split, n in f.dataset_pairs.items())
    if f.dataset_problems or f.dataset_warnings:
        parts = []
        if f.dataset_problems:
            parts.append(f"{f.dataset_problems} bad file(s) will be skipped")
        parts.extend(f.dataset_warnings[:2])
        return CheckItem("dataset", title, "warn", f"{pairs} usable pairs; " + "; ".join(parts),
                         f"see the files in the wizard's Check step (or: medseg data check {path})")
    return CheckItem("dataset", title, "ok", f"{pairs} usable pairs")


def check_pretrained(f: PreflightFacts) -> CheckItem:
    """Offline, 'auto' quietly trains from random weights; say so before Start, with the ways out."""
    title = "Pretrained weights"
    a = f.pretrained
    if a is None:
        return CheckItem("pretrained", title, "ok", "not checked")
    choose = ("choose a local weights file or model folder (Choose weights file… in the app, or "
              "training.pretrained = PATH)")
    if a.state == "scratch":
        return CheckItem("pretrained", title, "ok", "not used: " + a.detail)
    if a.state in ("local", "cached"):
        return CheckItem("pretrained", title, "ok", "available offline: " + a.detail)
    if a.state == "download":
        return CheckItem("pretrained", title, "ok", a.detail)
    if a.state == "bad":
        return CheckItem("pretrained", title, "fail", a.detail, choose + ", or set it to 'auto'")
    # offline and not cached
    if a.source == "hub":
        return CheckItem("pretrained", title, "fail", "not available offline: " + a.detail,
                         choose + ", connect to the internet, or set it to 'scratch'")
    return CheckItem("pretrained", title, "warn", "not available offline: " + a.detail + "; training would "
                     "start from random weights and need many more epochs",
                     choose + ", or connect to the internet once to download them")


def check_gpu_choice(f: PreflightFacts) -> CheckItem:
    """The cards in training.gpus exist and CUDA sees them (their free memory: ``check_vram_headroom``)."""
    title = "The chosen GPUs are there"
    tr = f.config.training
    fix_choice = ("pick the GPUs on the Hardware page, or set training.gpus to GPUs that the Hardware page "
                  "(or medseg hardware) lists (empty: the card with the most free memory)")
    if not runs_on_gpu(f):
        return CheckItem("gpu_choice", title, "ok", "not used: training on the CPU")
    if f.gpu_error:
        return CheckItem("gpu_choice", title, "fail", f.gpu_error, fix_choice)
    cards = f.train_gpus or ([f.gpu] if f.gpu is not None else [])
    if not cards:
        return CheckItem("gpu_choice", title, "warn", "the GPUs cannot be listed (the driver cannot be queried); "
                         "training uses " + (f"training.gpus = {tr.gpus}" if tr.gpus else "CUDA's first GPU"), "")
    names = "; ".join(f"{_card(g)} ({short_uuid(g.uuid)}, {_gb(g.free_gb)} free)" for g in cards)
    how = "as configured" if tr.gpus else "the most free memory (training.gpus is empty)"
    # Too little free memory on a chosen card is the VRAM headroom item's red (it checks the card with the
    # least free memory of these), so one cause never shows two red lines.
    if tr.gpus and tr.devices != len(tr.gpus):
        return CheckItem("gpu_choice", title, "warn", f"{names}; training.devices is {tr.devices} but "
                         f"training.gpus names {len(tr.gpus)}: the named GPUs train",
                         f"set training.devices = {len(tr.gpus)}")
    return CheckItem("gpu_choice", title, "ok", f"{names} ({how})")


CHECKS: list[Callable[[PreflightFacts], CheckItem]] = [
    check_config, check_torch_gpu, check_gpu_choice, check_vram_headroom, check_dataset, check_fits_card, check_mixed_precision,
    check_other_processes, check_workers, check_pinned_memory, check_pretrained]


def run_checks(facts: PreflightFacts) -> PreflightReport:
    return PreflightReport([mark_not_applicable(check(facts)) for check in CHECKS])


# ---- gathering the facts (touches torch, NVML, the dataset) ----------------------------------------

def _default_memory_model() -> tuple[Any, str]:
    """The packaged memory model; without one (or when it fails to load) no prediction, said plainly."""
    try:
        model = default_memory_model()
        return model, "" if model is not None else "no memory model available (not calibrated yet)"
    except Exception as exc:  # noqa: BLE001 — a broken calibration file must not block the checklist
        return None, f"no memory model available ({type(exc).__name__})"


def _training_gpus(snapshot: HardwareSnapshot, config: cfg.RunConfig) -> tuple[list[GpuInfo], str | None]:
    """The cards the run will train on, as the session resolves them (core/gpu_identity.py), or why not."""
    tr = config.training
    try:
        return choose_gpus(snapshot, tr.gpus, device_count(tr.gpus, tr.devices)), None
    except GpuSelectionError as exc:
        return [], str(exc)


def gather_facts(config: cfg.RunConfig, *, memory_model: Any = "default", snapshot: HardwareSnapshot | None = None,
                 report: Any = None, check_dataset_files: bool = True, mask_sample: int | None = 200) -> PreflightFacts:
    """Read torch's build, NVML (with other processes), the memory model's prediction and the dataset.

    ``memory_model``: a ``memory.MemoryModel``, None for "unknown", or "default" for the packaged model
    (``core.memory.default_memory_model``) when it exists. ``report``: a validation report already made.
    Seconds at most (the dataset check decodes ``mask_sample`` masks); run it off the GUI thread.
    """
    f = PreflightFacts(config=config.copy())
    torch_mod = None
    try:
        import torch as torch_mod  # noqa: PLC0415

        f.torch_version = torch_mod.__version__
        f.torch_cuda_build = torch_mod.version.cuda
        f.torch_cuda_available = bool(torch_mod.cuda.is_available())
    except Exception as exc:  # noqa: BLE001 — a broken install is exactly what this check reports
        f.torch_error = f"{type(exc).__name__}: {exc}"
    snap = snapshot if snapshot is not None else hardware.probe(with_processes=True)
    f.os_name, f.cpu_count = snap.os_name, snap.cpu_count
    f.gpus, f.nvml_error, f.cuda_driver_version = list(snap.gpus), snap.nvml_error, snap.cuda_driver_version
    f.train_gpus, f.gpu_error = _training_gpus(snap, f.config)
    f.gpu = min(f.train_gpus, key=lambda g: g.free_gb if g.free_gb is not None else float("inf"), default=None)
    tr = f.config.training
    f.pin_memory = tr.accelerator != "cpu" and f.torch_cuda_available  # the DataModule's rule
    _dataset_facts(f, report, check_dataset_files, mask_sample)
    _predict(f, memory_model)  # after the dataset: its size decides whether 'auto' compiles
    f.pretrained = pretrained_availability(f.config, online=None if offline_by_environment() else hub_reachable())
    return f


def _predict(f: PreflightFacts, memory_model: Any) -> None:
    if memory_model == "default":
        memory_model, note = _default_memory_model()
    else:
        note = "" if memory_model is not None else "no memory model given"
    if memory_model is None or not runs_on_gpu(f):
        f.peak_note = note
        return
    query_config = f.config.copy()
    query_config.training.precision = resolved_precision(f)
    tr, ds = query_config.training, query_config.dataset
    images = f.dataset_pairs.get("train") or None  # the same rule as the plan's (recommend.plan_compiles)
    if f.dataset_is_demo:
        images = summary_for_recommendation("demo")[0].train_images
    try:
        f.predicted_peak_gb = float(predicted_peak(memory_model, query_config, train_images=images))
        if f.gpu is not None and f.gpu.free_gb is not None:
            f.batch_fitting_free = largest_batch(memory_model, query_config, f.gpu.free_gb - HEADROOM_GB,
                                                 tr.variant, ds.image_size, train_images=images) or None
        if f.gpu is not None and f.gpu.total_gb is not None:
            f.batch_fitting_card = largest_batch(memory_model, query_config, f.gpu.total_gb - HEADROOM_GB,
                                                 tr.variant, ds.image_size, train_images=images) or None
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
