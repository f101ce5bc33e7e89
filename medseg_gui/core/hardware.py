"""A snapshot of the machine's GPUs (through NVML) and CPU/RAM, cheap enough to poll every second.

Why NVML and not torch.cuda: NVML reads the driver without creating a CUDA context (which would
cost ~0.5 GB of VRAM and seconds of start-up in the GUI process), sees memory used by *other*
programs, and works when the installed torch is a CPU build. Every query is guarded: no driver, no
GPU, MIG, or a query the card does not support gives ``None`` for that field ("n/a" on screen),
never an exception.

Each ``GpuInfo`` also gets the ordinal CUDA will give it (``assign_cuda_indices``), following CUDA's
documented rules:

* ``CUDA_DEVICE_ORDER=PCI_BUS_ID``: ordinals in PCI bus order (nvidia-smi's order).
* ``FASTEST_FIRST`` (CUDA's default when unset): CUDA ranks cards by a heuristic it does not
  publish. We rank by compute capability, then estimated throughput (CUDA cores x max SM clock),
  ties in PCI bus order. For identical cards (the usual workstation or server) this is exactly
  PCI order, as CUDA does; for mixed cards it is our best guess, so the training process checks it
  against the UUIDs PyTorch reports for each ordinal and trusts PyTorch (``torch_uuids``).
* ``CUDA_VISIBLE_DEVICES`` unset: every card. Set but empty: none. Otherwise a comma-separated list
  of ordinals (in the order above), UUIDs (``GPU-...``, in full or any unique prefix) or MIG ids
  (``MIG-...``); the listed cards become ordinals 0, 1, ... in the listed order. The first invalid
  entry (an unknown or ambiguous one, a negative number; we treat a repeated card the same way) ends
  the list, as in CUDA: ``0,2,-1,1`` shows cards 0 and 2 only.
* A MIG entry maps to the card that holds the MIG instance (its memory figures are the whole card's;
  the recommendation warns about that).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import threading
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

GIB = 1024**3


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_gb: float | None


@dataclass
class GpuInfo:
    """One card. ``uuid`` is its identity; ``index`` is NVML's (nvidia-smi's) number; ``cuda_index`` is
    the ordinal CUDA gives it in this process (``cuda:N``, what training uses; None when
    CUDA_VISIBLE_DEVICES hides it). ``assign_cuda_indices`` below sets it."""
    index: int
    name: str
    uuid: str | None = None
    cuda_index: int | None = None
    pci_bus_id: str | None = None
    cuda_cores: int | None = None
    mig_uuids: list[str] = field(default_factory=list)
    total_gb: float | None = None
    used_gb: float | None = None
    free_gb: float | None = None
    utilization_pct: float | None = None
    memory_utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    compute_capability: tuple[int, int] | None = None
    mig_enabled: bool | None = None
    memory_bus_width_bits: int | None = None
    max_memory_clock_mhz: int | None = None
    sm_clock_mhz: int | None = None
    max_sm_clock_mhz: int | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    used_by_this_process_gb: float | None = None

    @property
    def supports_bf16(self) -> bool:
        """Ampere (sm_80) and newer run bf16 natively; older cards emulate it slowly."""
        return self.compute_capability is not None and self.compute_capability >= (8, 0)

    @property
    def memory_bandwidth_gbs(self) -> float | None:
        """Peak bandwidth estimate from bus width and memory clock (DDR: 2 transfers per clock).

        For GDDR6X/HBM the factor differs; it is only used to scale measured throughput between
        cards, where a consistent rule matters more than the exact figure.
        """
        if not self.memory_bus_width_bits or not self.max_memory_clock_mhz:
            return None
        return self.memory_bus_width_bits / 8 * self.max_memory_clock_mhz * 2 / 1000

    @property
    def used_by_others_gb(self) -> float | None:
        if self.used_gb is None:
            return None
        return max(0.0, self.used_gb - (self.used_by_this_process_gb or 0.0))


@dataclass
class HardwareSnapshot:
    gpus: list[GpuInfo]
    cpu_count: int
    cpu_name: str
    ram_total_gb: float | None
    ram_available_gb: float | None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_error: str | None = None  # why no GPU could be read, in words
    os_name: str = field(default_factory=platform.system)
    cuda_visible_devices: str | None = None  # the environment the CUDA ordinals were computed for
    cuda_device_order: str | None = None

    def __post_init__(self) -> None:
        # A snapshot built by hand (tests, a what-if) numbers its cards as CUDA does with no
        # CUDA_VISIBLE_DEVICES and identical cards: CUDA ordinal = NVML index. ``probe`` maps real ones.
        if self.gpus and all(g.cuda_index is None for g in self.gpus):
            for g in self.gpus:
                g.cuda_index = g.index

    @property
    def cuda_gpus(self) -> list[GpuInfo]:
        """The cards CUDA can use, by ordinal (what "GPU 0", "GPU 1" mean everywhere in the app)."""
        return sorted((g for g in self.gpus if g.cuda_index is not None), key=lambda g: g.cuda_index)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for gpu, info in zip(data["gpus"], self.gpus):
            gpu["supports_bf16"] = info.supports_bf16
            gpu["memory_bandwidth_gbs"] = info.memory_bandwidth_gbs
            gpu["used_by_others_gb"] = info.used_by_others_gb
            cc = info.compute_capability
            gpu["compute_capability"] = f"{cc[0]}.{cc[1]}" if cc else None
        data["has_gpu"] = self.has_gpu
        return data


VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
ORDER_ENV = "CUDA_DEVICE_ORDER"


# ---- CUDA's numbering ----------------------------------------------------------------------------

def cuda_order(gpus: Sequence[GpuInfo], order: str | None = None) -> list[GpuInfo]:
    """All cards in the order CUDA enumerates them before ``CUDA_VISIBLE_DEVICES`` is applied."""
    order = (order if order is not None else os.environ.get(ORDER_ENV, "")).strip().upper()
    pci = sorted(gpus, key=lambda g: (g.pci_bus_id or "", g.index))
    if order == "PCI_BUS_ID":
        return pci

    def speed(g: GpuInfo) -> tuple:
        cc = g.compute_capability or (0, 0)
        throughput = (g.cuda_cores or 0) * (g.max_sm_clock_mhz or 0)
        return (-cc[0], -cc[1], -throughput)

    return sorted(pci, key=speed)  # stable: ties keep PCI order


def match_uuid(entry: str, gpus: Sequence[GpuInfo]) -> GpuInfo | None:
    """The one card whose UUID (or one of its MIG instances' UUIDs) starts with ``entry``."""
    key = entry.lower()
    if key.startswith("mig-gpu-"):  # the old MIG form, MIG-GPU-<card uuid>/<gi>/<ci>: the card itself
        key = key[len("mig-"):].split("/")[0]
    hits = [g for g in gpus if any(i and i.lower().startswith(key) for i in [g.uuid or "", *g.mig_uuids])]
    return hits[0] if len(hits) == 1 else None


def visible_gpus(gpus: Sequence[GpuInfo], visible: str | None = None, order: str | None = None,
                 *, use_env: bool = True) -> list[GpuInfo]:
    """The cards CUDA sees, in ordinal order (``visible``: the CUDA_VISIBLE_DEVICES text; None = unset)."""
    if visible is None and use_env:
        visible = os.environ.get(VISIBLE_ENV)
    ordered = cuda_order(gpus, order)
    if visible is None:
        return ordered
    out: list[GpuInfo] = []
    for raw in visible.split(","):
        entry = raw.strip()
        gpu = None
        if entry.isdigit():
            n = int(entry)
            gpu = ordered[n] if n < len(ordered) else None
        elif entry[:4].upper() in ("GPU-", "MIG-"):
            gpu = match_uuid(entry, ordered)
        if gpu is None or any(g is gpu for g in out):
            break  # CUDA stops at the first invalid entry
        out.append(gpu)
    return out


def assign_cuda_indices(gpus: Sequence[GpuInfo], visible: str | None = None, order: str | None = None,
                        *, use_env: bool = True) -> None:
    """Set each card's ``cuda_index`` (None for cards CUDA cannot see) from the environment or the args."""
    seen = visible_gpus(gpus, visible, order, use_env=use_env)
    for g in gpus:
        g.cuda_index = None
    for ordinal, g in enumerate(seen):
        g.cuda_index = ordinal


def cpu_only_snapshot(reason: str | None = None) -> HardwareSnapshot:
    snap = _cpu_part()
    snap.nvml_error = reason
    return snap


def _cpu_part() -> HardwareSnapshot:
    total = avail = None
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, avail = vm.total / GIB, vm.available / GIB
    except Exception:  # psutil missing or unsupported platform
        pass
    return HardwareSnapshot(gpus=[], cpu_count=os.cpu_count() or 1, cpu_name=_cpu_name(),
                            ram_total_gb=total, ram_available_gb=avail)


_CPU_NAME: str | None = None


def _cpu_name() -> str:
    global _CPU_NAME
    if _CPU_NAME is None:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _CPU_NAME = name
    return _CPU_NAME


class _Nvml:
    """Owns NVML initialisation: once per process, remembered failure, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._module: ModuleType | None = None
        self._error: str | None = None
        self._initialised = False

    def get(self, module: ModuleType | None = None) -> tuple[ModuleType | None, str | None]:
        with self._lock:
            if module is not None:  # injected (tests, or a caller with its own binding)
                return self._init(module)
            if not self._initialised:
                self._initialised = True
                try:
                    import pynvml
                except ImportError:
                    self._error = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
                    return None, self._error
                self._module, self._error = self._init(pynvml)
            return self._module, self._error

    @staticmethod
    def _init(module: ModuleType) -> tuple[ModuleType | None, str | None]:
        try:
            module.nvmlInit()
            return module, None
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, anything
            return None, _explain_init_error(exc)


def _explain_init_error(exc: Exception) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "no NVIDIA driver found (libnvidia-ml is missing): training will use the CPU"
    if "DriverNotLoaded" in name:
        return "the NVIDIA driver is installed but not loaded: reboot or load the driver"
    if "NoPermission" in name:
        return "no permission to query the NVIDIA driver"
    return f"the NVIDIA driver could not be queried ({name}: {exc})"


_NVML = _Nvml()


def _try(fn, *args, default=None):
    """One NVML query; NotSupported, a MIG restriction or any other error → default."""
    try:
        return fn(*args)
    except Exception:
        return default


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(nvml: ModuleType | None = None, with_processes: bool = False,
          environ: Mapping[str, str] | None = None) -> HardwareSnapshot:
    """Read all GPUs and the CPU; never raises.

    ``with_processes`` lists other programs on each GPU with their names (a few extra syscalls);
    the per-second poll leaves it off, the pre-flight checklist turns it on.
    ``environ``: the process environment whose CUDA numbering (CUDA_VISIBLE_DEVICES,
    CUDA_DEVICE_ORDER) the snapshot speaks of; default this process's, or, for an injected binding
    that describes a whole machine (the tests' fake NVML), its ``process_environ``.
    """
    snap = _cpu_part()
    try:
        module, error = _NVML.get(nvml)
        if module is None:
            snap.nvml_error = error
            return snap
        snap.driver_version = _text(_try(module.nvmlSystemGetDriverVersion))
        cuda = _try(module.nvmlSystemGetCudaDriverVersion)
        if isinstance(cuda, int):
            snap.cuda_driver_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        count = _try(module.nvmlDeviceGetCount, default=0) or 0
        for index in range(count):
            gpu = _read_gpu(module, index, with_processes)
            if gpu is not None:
                snap.gpus.append(gpu)
        if count and not snap.gpus:
            snap.nvml_error = "NVIDIA GPUs were found but none could be read"
        if environ is None:
            environ = getattr(module, "process_environ", None)
        env = os.environ if environ is None else environ
        snap.cuda_visible_devices = env.get(VISIBLE_ENV)
        snap.cuda_device_order = env.get(ORDER_ENV) or "FASTEST_FIRST"
        assign_cuda_indices(snap.gpus, snap.cuda_visible_devices, snap.cuda_device_order, use_env=False)
    except Exception as exc:  # a broken binding must not take the app down
        snap.gpus = []
        snap.nvml_error = f"GPU query failed ({type(exc).__name__}: {exc})"
    return snap


def _read_gpu(m: ModuleType, index: int, with_processes: bool) -> GpuInfo | None:
    handle = _try(m.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return None
    gpu = GpuInfo(index=index, name=_text(_try(m.nvmlDeviceGetName, handle)) or f"GPU {index}")
    gpu.uuid = _text(_try(m.nvmlDeviceGetUUID, handle))
    pci = _try(m.nvmlDeviceGetPciInfo, handle)
    gpu.pci_bus_id = _text(getattr(pci, "busId", None)) if pci is not None else None
    cores = _try(m.nvmlDeviceGetNumGpuCores, handle) if hasattr(m, "nvmlDeviceGetNumGpuCores") else None
    gpu.cuda_cores = cores if isinstance(cores, int) else None
    mem = _try(m.nvmlDeviceGetMemoryInfo, handle)
    if mem is not None:
        gpu.total_gb, gpu.used_gb, gpu.free_gb = mem.total / GIB, mem.used / GIB, mem.free / GIB
    util = _try(m.nvmlDeviceGetUtilizationRates, handle)
    if util is not None:
        gpu.utilization_pct, gpu.memory_utilization_pct = float(util.gpu), float(util.memory)
    temp = _try(m.nvmlDeviceGetTemperature, handle, getattr(m, "NVML_TEMPERATURE_GPU", 0))
    gpu.temperature_c = float(temp) if temp is not None else None
    power = _try(m.nvmlDeviceGetPowerUsage, handle)
    gpu.power_w = power / 1000 if power is not None else None
    limit = _try(m.nvmlDeviceGetEnforcedPowerLimit, handle)
    gpu.power_limit_w = limit / 1000 if limit is not None else None
    cc = _try(m.nvmlDeviceGetCudaComputeCapability, handle)
    gpu.compute_capability = (int(cc[0]), int(cc[1])) if cc else None
    mig = _try(m.nvmlDeviceGetMigMode, handle)
    gpu.mig_enabled = bool(mig[0]) if mig else None
    if gpu.mig_enabled:
        gpu.mig_uuids = _mig_uuids(m, handle)
    gpu.memory_bus_width_bits = _try(m.nvmlDeviceGetMemoryBusWidth, handle)
    mem_clock = getattr(m, "NVML_CLOCK_MEM", 2)
    sm_clock = getattr(m, "NVML_CLOCK_SM", 1)
    gpu.max_memory_clock_mhz = _try(m.nvmlDeviceGetMaxClockInfo, handle, mem_clock)
    gpu.sm_clock_mhz = _try(m.nvmlDeviceGetClockInfo, handle, sm_clock)
    gpu.max_sm_clock_mhz = _try(m.nvmlDeviceGetMaxClockInfo, handle, sm_clock)
    gpu.throttle_reasons = _throttle_reasons(m, handle)
    procs = _processes(m, handle, with_processes)
    own = [p for p in procs if p.pid == os.getpid()]
    gpu.used_by_this_process_gb = sum(p.used_gb or 0.0 for p in own) if procs else None
    gpu.processes = [p for p in procs if p.pid != os.getpid()] if with_processes else []
    return gpu


def _mig_uuids(m: ModuleType, handle: Any) -> list[str]:
    """UUIDs of the card's MIG instances (CUDA_VISIBLE_DEVICES may name them: MIG-...)."""
    out = []
    for i in range(_try(m.nvmlDeviceGetMaxMigDeviceCount, handle, default=0) or 0):
        mig = _try(m.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
        uuid = _text(_try(m.nvmlDeviceGetUUID, mig)) if mig is not None else None
        if uuid:
            out.append(uuid)
    return out


# NVML clock-event bits (nvmlClocksEventReasons / nvmlClocksThrottleReasons); stable across versions.
_THROTTLE_BITS = {
    0x2: "applications clock setting",
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "power brake (external)",
}


def _throttle_reasons(m: ModuleType, handle: Any) -> list[str]:
    getter = getattr(m, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        m, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    bits = _try(getter, handle) if getter else None
    if not isinstance(bits, int):
        return []
    return [text for bit, text in _THROTTLE_BITS.items() if bits & bit]


def _processes(m: ModuleType, handle: Any, with_names: bool) -> list[GpuProcess]:
    out: dict[int, GpuProcess] = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        fn = getattr(m, getter, None)
        for proc in (_try(fn, handle, default=[]) if fn else []) or []:
            used = getattr(proc, "usedGpuMemory", None)
            used_gb = used / GIB if isinstance(used, int) and used >= 0 else None
            pid = int(getattr(proc, "pid", -1))
            if pid in out:
                continue
            out[pid] = GpuProcess(pid=pid, name=_process_name(pid) if with_names else "", used_gb=used_gb)
    return list(out.values())


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:
        return f"pid {pid}"


def free_for_plan_gb() -> float | None:
    """Free GiB on this process's current CUDA device as a plan counts it: what the card has free
    plus what this process already holds (its CUDA context, which the memory model's peak already
    includes). Without the add-back a run re-checking its plan counts its own context twice and
    drops a graph the plan fitted (seen on 2 x H200: a 4 GB card planned at 3.20 GB reported 2.30 GB,
    ungraphed). None without CUDA; NVML missing or blind to this process (containers): free alone."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free = torch.cuda.mem_get_info()[0] / GIB
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    except Exception:  # noqa: BLE001 — no usable CUDA: no free memory to speak of
        return None
    uuid = uuid if uuid[:4].upper() in ("GPU-", "MIG-") else f"GPU-{uuid}"
    own = 0.0
    for gpu in probe().gpus:
        if gpu.uuid and gpu.uuid.lower() == uuid.lower():
            own = gpu.used_by_this_process_gb or 0.0
    return free + own
