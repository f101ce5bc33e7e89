"""Slowdown diagnosis ("why is my GPU slower than the table?"): which part holds the run back, and what to do.

There are four usual causes: a CPU-bound loader (more workers), slow disk I/O (an SSD), heat (cooling)
and other programs on the GPU (close them). During training we measure what separates them:

* **data wait**: the host time between the end of one training batch and the start of the next is
  spent fetching the next batch from the loader (Lightning fetches and moves it to the device before
  ``on_train_batch_start``). Its share of the step time says whether the GPU waits for data. With
  CUDA's asynchronous launches a single step's split is noisy, but summed over a window the host's
  blocking time lands on the side that is really slow;
* **GPU utilisation, clocks and throttle reasons** from NVML (thermal slowdown bits, temperature);
* **other processes** on the card, with names and memory, from NVML.

``diagnose(samples)`` is a pure function over those measurements so each verdict is testable with
made-up numbers; ``DiagnosisCallback`` gathers them in a real run and emits the verdict as a
``LogMessage`` (the existing protocol; no new event type) every few dozen steps.

It lives in the engine, not with the tools: every training run carries the callback (the session adds
it on rank 0, whoever started the run: the GUI, the CLI or a script), so leaving it to each caller
would let a run start without it; the benchmark tool reuses its step timer and verdict from here.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from medseg_gui.core import hardware
from medseg_gui.core.events import LogMessage
from medseg_gui.core.words import plural

DATA_WAIT_SHARE = 0.25  # above this share of step time spent waiting for data, the loader is the limit
THROTTLE_SHARE = 0.5  # thermal slowdown in at least half the samples
OTHERS_MIN_GB = 0.25  # a process holding less than this is not a serious competitor
LOW_UTIL_PCT = 70.0
# Above this the GPU is saturated: with asynchronous steps (CUDA graphs, compiled steps) the host
# finishes its work early and then "waits for data" while the GPU works through queued steps.
SATURATED_UTIL_PCT = 95.0
THERMAL_REASONS = ("software thermal slowdown", "hardware thermal slowdown", "hardware slowdown")
# Display servers hold some VRAM but use little compute: reported, never blamed.
DISPLAY_PROCESSES = {"xorg", "xwayland", "gnome-shell", "kwin_x11", "kwin_wayland", "dwm.exe", "explorer.exe",
                     "windowserver", "plasmashell", "sway", "mutter", "cinnamon"}
LOG_PREFIX = "Slowdown check"
# Window defaults for a real run: enough steps for stable shares, at least this many seconds apart.
WINDOW_STEPS = 50
WINDOW_MIN_S = 10.0
WARMUP_STEPS = 5

BOTTLENECKS = ("data loading", "thermal throttling", "other programs", "gpu compute", "cpu compute", "unknown")


@dataclass
class DiagSample:
    """One window of training steps: host timings plus (on a GPU) what NVML said at its end."""
    steps: int
    data_wait_s: float
    compute_s: float
    device: str = "gpu"  # "gpu" | "cpu"
    gpu_util_pct: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    max_sm_clock_mhz: int | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    other_processes: list[tuple[str, float | None]] = field(default_factory=list)  # (name, GB)

    @property
    def wait_share(self) -> float:
        total = self.data_wait_s + self.compute_s
        return self.data_wait_s / total if total > 0 else 0.0


@dataclass
class DiagContext:
    """What the advice depends on: the loader settings and the machine."""
    num_workers: int = 0
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    os_name: str = field(default_factory=platform.system)
    cache_images: bool = False
    variant: str | None = None  # the run's model and image size: advice never suggests what is already set
    image_size: int | None = None


@dataclass
class Diagnosis:
    bottleneck: str  # one of BOTTLENECKS
    evidence: list[str]
    advice: list[str]
    data_wait_share: float | None = None
    gpu_util_pct: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """One log line: the verdict, the numbers behind it and the first thing to try."""
        line = f"{LOG_PREFIX}: bottleneck = {self.bottleneck}"
        if self.evidence:
            line += " (" + "; ".join(self.evidence) + ")"
        if self.advice:
            line += ". What to do: " + " ".join(self.advice)
        return line

    @property
    def is_problem(self) -> bool:
        return self.bottleneck in ("data loading", "thermal throttling", "other programs")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _competitors(samples: list[DiagSample]) -> dict[str, float]:
    """Other processes seen in the samples: name -> largest memory seen (GB), display servers left out."""
    seen: dict[str, float] = {}
    for s in samples:
        for name, gb in s.other_processes:
            if name.lower() in DISPLAY_PROCESSES:
                continue
            seen[name] = max(seen.get(name, 0.0), gb or 0.0)
    return seen


def diagnose(samples: list[DiagSample], context: DiagContext | None = None) -> Diagnosis:
    """Name the bottleneck of the sampled windows and say what to change.

    Order of the rules: the loader first (a starving GPU makes every other number look idle), then heat
    (the card slows itself), then other programs (they share the card's time), else the run is
    compute-bound — the healthy state on a GPU.
    """
    context = context or DiagContext()
    if not samples:
        return Diagnosis("unknown", ["no training steps measured yet"], [])
    steps = sum(s.steps for s in samples)
    wait = sum(s.data_wait_s for s in samples)
    compute = sum(s.compute_s for s in samples)
    share = wait / (wait + compute) if wait + compute > 0 else 0.0
    on_gpu = any(s.device == "gpu" for s in samples)
    util = _mean([s.gpu_util_pct for s in samples if s.gpu_util_pct is not None])
    temps = [s.temperature_c for s in samples if s.temperature_c is not None]
    ms_step = 1000 * (wait + compute) / steps if steps else 0.0
    timing = f"{100 * share:.0f}% of step time waiting for data, {ms_step:.0f} ms per step over {plural(steps, 'step')}"
    evidence = [timing]
    if util is not None:
        evidence.append(f"GPU busy {util:.0f}% of the time")

    saturated = on_gpu and util is not None and util >= SATURATED_UTIL_PCT
    if share >= DATA_WAIT_SHARE and not saturated:
        return Diagnosis("data loading", evidence, _data_advice(context), share, util, steps)
    if share >= DATA_WAIT_SHARE:
        evidence.append("the loader is not the limit: the host waits while the GPU works through the steps "
                        "already queued")

    thermal = [s for s in samples if any(r in THERMAL_REASONS for r in s.throttle_reasons)]
    if on_gpu and len(thermal) >= THROTTLE_SHARE * len(samples):
        reasons = sorted({r for s in thermal for r in s.throttle_reasons if r in THERMAL_REASONS})
        evidence.append("the GPU slowed its clocks: " + ", ".join(reasons))
        if temps:
            evidence.append(f"temperature up to {max(temps):.0f} °C")
        clocks = [(s.sm_clock_mhz, s.max_sm_clock_mhz) for s in thermal if s.sm_clock_mhz and s.max_sm_clock_mhz]
        if clocks:
            evidence.append(f"clock {clocks[-1][0]} of {clocks[-1][1]} MHz")
        advice = ["Improve cooling: clean dust from the fans and heatsink, give the case or laptop vents room "
                  "to breathe, and check the fan curve.",
                  "A lower power limit (nvidia-smi -pl) trades a little speed for much less heat."]
        return Diagnosis("thermal throttling", evidence, advice, share, util, steps)

    others = _competitors(samples)
    heavy = {name: gb for name, gb in others.items() if gb >= OTHERS_MIN_GB}
    if on_gpu and heavy:
        listed = ", ".join(f"{name} ({gb:.1f} GB)" for name, gb in sorted(heavy.items(), key=lambda kv: -kv[1]))
        evidence.append(f"other programs on the GPU: {listed}")
        advice = [f"Close the other programs using the GPU ({', '.join(sorted(heavy))}); they share its time "
                  "and memory with training."]
        return Diagnosis("other programs", evidence, advice, share, util, steps)

    if not on_gpu:
        return Diagnosis("cpu compute", evidence, [_cpu_advice(context)], share, util, steps)
    if util is not None and util < LOW_UTIL_PCT:
        evidence.append("the GPU is often idle although data arrives in time: the steps are small and "
                        "launch-bound")
        return Diagnosis("gpu compute", evidence, [
            "A larger batch (if it fits) or torch.compile (training.compile) keeps a fast GPU busier."],
            share, util, steps)
    return Diagnosis("gpu compute", evidence, [
        "The GPU is the limit, which is the healthy state. Faster only with a smaller model or image size, "
        "precision 'auto' (bf16/fp16), channels_last, or torch.compile."], share, util, steps)


def _cpu_advice(context: DiagContext) -> str:
    """A smaller model or image only when the run is not already that small."""
    head = "Training runs on the CPU, where SegFormer is 10-100x slower than on a CUDA GPU"
    size = context.image_size
    if context.variant == "b0" and size is not None and size <= 224:
        return (f"{head}. This run is already the smallest model (SegFormer-b0 · {size} px): fewer epochs or a "
                "cap on steps per epoch shortens it; a CUDA GPU makes it fast.")
    target = min(size, 224) if size is not None else 224
    return f"{head}; for a quick look use SegFormer-b0 at {target} px."


def _data_advice(context: DiagContext) -> list[str]:
    """The two data fixes (more workers, an SSD) made concrete for this machine."""
    advice = []
    cores = max(1, context.cpu_count)
    if context.os_name == "Windows":
        if not context.cache_images:
            advice.append("On Windows loader workers are costly to start; turn on dataset.cache_images "
                          "(decode once into RAM) instead of raising training.num_workers.")
    elif context.num_workers < max(1, cores - 1):
        target = min(cores - 1, max(2, 2 * context.num_workers), 8) if cores > 1 else 0
        if target > context.num_workers:
            advice.append(f"Raise training.num_workers from {context.num_workers} to {target} "
                          f"({cores} CPU cores).")
    if not context.cache_images:
        advice.append("Turn on dataset.cache_images to decode each image once into RAM.")
    advice.append("Keep the dataset on an SSD (not a network share or USB disk), and store images near "
                  "the training size so less time goes into decoding and resizing.")
    return advice


# ---- measurement in a real run ---------------------------------------------------------------------

GpuSampler = Callable[[], dict[str, Any] | None]


def nvml_sampler(device_index: int = 0) -> GpuSampler:
    """NVML figures for the training GPU (matched by UUID when torch can tell, else the only GPU)."""
    uuid = None
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(device_index).uuid)
    except Exception:  # noqa: BLE001 — older torch or no CUDA
        pass

    def sample() -> dict[str, Any] | None:
        gpus = hardware.probe(with_processes=True).gpus
        match = [g for g in gpus if g.uuid and uuid and g.uuid.endswith(uuid)] or (gpus if len(gpus) == 1 else [])
        if not match:
            return None
        g = match[0]
        return {"gpu_util_pct": g.utilization_pct, "temperature_c": g.temperature_c,
                "sm_clock_mhz": g.sm_clock_mhz, "max_sm_clock_mhz": g.max_sm_clock_mhz,
                "throttle_reasons": list(g.throttle_reasons),
                "other_processes": [(p.name, p.used_gb) for p in g.processes]}

    return sample


class StepTimer:
    """Host-side split of training time into data wait and compute, per batch (no device sync).

    The first batch of each epoch is left out: its wait includes starting the loader's workers.
    """

    def __init__(self) -> None:
        self._prev_end: float | None = None
        self._start: float | None = None
        self._wait: float | None = None
        self.steps = 0
        self.data_wait_s = 0.0
        self.compute_s = 0.0

    def epoch_start(self) -> None:
        self._prev_end = None

    def batch_start(self) -> None:
        now = time.perf_counter()
        self._wait = None if self._prev_end is None else now - self._prev_end
        self._start = now

    def batch_end(self) -> None:
        now = time.perf_counter()
        if self._start is not None and self._wait is not None:
            self.steps += 1
            self.data_wait_s += self._wait
            self.compute_s += now - self._start
        self._prev_end = now
        self._start = None

    def take(self) -> tuple[int, float, float]:
        """(steps, wait, compute) since the last take, then reset the window."""
        out = (self.steps, self.data_wait_s, self.compute_s)
        self.steps, self.data_wait_s, self.compute_s = 0, 0.0, 0.0
        return out


def _build_callback_class() -> type:
    import lightning as L

    class DiagnosisCallback(L.Callback):
        """Times data wait vs compute, samples NVML every window, emits the diagnosis as a LogMessage.

        Put it last in the callback list so other callbacks' per-batch work counts as compute, not wait.
        A diagnosis is emitted on the first window, when the bottleneck changes, and every
        ``repeat_every`` windows while a problem persists — informative without flooding the log.
        """

        def __init__(self, emit: Callable[[Any], None], *, context: DiagContext | None = None,
                     gpu_sampler: GpuSampler | None = None, device: str = "gpu", every_n_steps: int | None = None,
                     min_window_s: float | None = None, warmup_steps: int | None = None, history_windows: int = 3,
                     repeat_every: int = 10):
            self.emit = emit
            self.context = context or DiagContext()
            self.gpu_sampler = gpu_sampler
            self.device = device
            self.every_n_steps = max(1, WINDOW_STEPS if every_n_steps is None else every_n_steps)
            self.min_window_s = WINDOW_MIN_S if min_window_s is None else min_window_s
            self.warmup_steps = WARMUP_STEPS if warmup_steps is None else warmup_steps
            self.history_windows = max(1, history_windows)
            self.repeat_every = max(1, repeat_every)
            self.timer = StepTimer()
            self.samples: list[DiagSample] = []
            self.diagnoses: list[Diagnosis] = []
            self._seen = 0
            self._window_start = time.monotonic()
            self._last_emitted: str | None = None
            self._since_emit = 0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.timer.epoch_start()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.timer.batch_start()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            self._seen += 1
            if self._seen <= self.warmup_steps:  # compilation, cuDNN autotuning, worker start-up
                self.timer.batch_end()
                self.timer.take()
                return
            self.timer.batch_end()
            if self.timer.steps >= self.every_n_steps and \
                    time.monotonic() - self._window_start >= self.min_window_s:
                self.close_window()

        def close_window(self) -> Diagnosis | None:
            steps, wait, compute = self.timer.take()
            self._window_start = time.monotonic()
            if not steps:
                return None
            sample = DiagSample(steps=steps, data_wait_s=wait, compute_s=compute, device=self.device)
            if self.gpu_sampler is not None:
                try:
                    for key, value in (self.gpu_sampler() or {}).items():
                        setattr(sample, key, value)
                except Exception:  # noqa: BLE001 — NVML trouble must never stop training
                    pass
            self.samples.append(sample)
            result = diagnose(self.samples[-self.history_windows:], self.context)
            self.diagnoses.append(result)
            self._since_emit += 1
            if result.bottleneck != self._last_emitted or (result.is_problem and self._since_emit >= self.repeat_every):
                self._last_emitted, self._since_emit = result.bottleneck, 0
                level = "warning" if result.is_problem else "info"
                try:
                    self.emit(LogMessage(level=level, message=result.text()))
                except Exception:  # noqa: BLE001 — a broken sink must not stop training
                    pass
            return result

    DiagnosisCallback.__module__ = __name__
    return DiagnosisCallback


def __getattr__(name: str) -> Any:
    """``DiagnosisCallback`` is defined on first use, so importing this module does not import Lightning."""
    if name == "DiagnosisCallback":
        cls = _build_callback_class()
        globals()["DiagnosisCallback"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def diagnosis_callback(emit: Callable[[Any], None], accelerator: str, config: Any, **kwargs: Any) -> Any:
    """The callback for a training run of ``config`` on ``accelerator`` ("gpu"/"cpu") — the session's hook."""
    cls = globals().get("DiagnosisCallback") or __getattr__("DiagnosisCallback")
    context = DiagContext(num_workers=config.training.num_workers,
                          cache_images=bool(getattr(config.dataset, "cache_images", False)),
                          variant=config.training.variant, image_size=config.dataset.image_size)
    sampler = None
    if accelerator == "gpu":
        try:
            import torch

            sampler = nvml_sampler(torch.cuda.current_device())
        except Exception:  # noqa: BLE001
            sampler = None
    return cls(emit, context=context, gpu_sampler=sampler, device="gpu" if accelerator == "gpu" else "cpu",
               **kwargs)
