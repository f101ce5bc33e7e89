"""Fake NVML bindings (the shape of nvidia-ml-py's pynvml) for tests without a driver."""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field

GIB = 1024**3


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 3060"
    total_gb: float = 12.0
    used_gb: float = 0.5
    util: int = 37
    temp: int = 61
    power_mw: int = 95_000
    cc: tuple[int, int] = (8, 6)
    processes: list[tuple[int, float]] = field(default_factory=list)  # (pid, GB)
    unsupported: set[str] = field(default_factory=set)
    bus_width: int = 192
    mem_clock: int = 7501
    throttle: int = 0
    uuid: str | None = None  # default: GPU-<nvml index>-fake…, unique per card
    pci_bus_id: str | None = None  # default: bus = NVML index + 1 (NVML enumerates in PCI order)
    cores: int = 3584
    max_sm_clock: int = 1800
    mig_uuids: list[str] = field(default_factory=list)  # MIG instances (MIG mode on when non-empty)


def make_nvml(gpus: list[FakeGpu], driver: str = "550.54", environ: dict[str, str] | None = None
              ) -> types.SimpleNamespace:
    """A module-like object; calls listed in a GPU's ``unsupported`` raise NotSupported.

    ``environ`` is the simulated process's environment (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER) that
    ``hardware.probe`` numbers the cards for; default: neither set (conftest hides the real GPUs from
    torch with CUDA_VISIBLE_DEVICES="", which must not hide the fake machine's cards).
    """

    def guarded(name, fn):
        def call(handle, *args):
            if name in gpus[handle].unsupported:
                raise NVMLError_NotSupported(name)
            return fn(gpus[handle], *args)
        return call

    mem = lambda g: types.SimpleNamespace(total=int(g.total_gb * GIB), used=int(g.used_gb * GIB),
                                          free=int((g.total_gb - g.used_gb) * GIB))
    procs = lambda g: [types.SimpleNamespace(pid=p, usedGpuMemory=int(gb * GIB)) for p, gb in g.processes]
    for i, g in enumerate(gpus):
        g.uuid = g.uuid or f"GPU-{i:08x}-0000-4000-8000-fake{i:08x}"
        g.pci_bus_id = g.pci_bus_id or f"00000000:{i + 1:02X}:00.0"
    mig_handles = {}  # MIG handles are ("mig", card, n)

    def mig_handle(g, n):
        handle = ("mig", id(g), n)
        mig_handles[handle] = g.mig_uuids[n]
        return handle

    def uuid_of(handle):
        if isinstance(handle, tuple):
            return mig_handles[handle]
        if "nvmlDeviceGetUUID" in gpus[handle].unsupported:
            raise NVMLError_NotSupported("nvmlDeviceGetUUID")
        return gpus[handle].uuid

    m = types.SimpleNamespace(
        process_environ=dict(environ or {}),
        NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: None,
        nvmlDeviceGetUUID=uuid_of,
        nvmlSystemGetDriverVersion=lambda: driver,
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
    )
    calls = {
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetPciInfo": lambda g: types.SimpleNamespace(busId=g.pci_bus_id.encode()),
        "nvmlDeviceGetNumGpuCores": lambda g: g.cores,
        "nvmlDeviceGetMaxMigDeviceCount": lambda g: len(g.mig_uuids),
        "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
        "nvmlDeviceGetMemoryInfo": mem,
        "nvmlDeviceGetUtilizationRates": lambda g: types.SimpleNamespace(gpu=g.util, memory=10),
        "nvmlDeviceGetTemperature": lambda g, sensor: g.temp,
        "nvmlDeviceGetPowerUsage": lambda g: g.power_mw,
        "nvmlDeviceGetEnforcedPowerLimit": lambda g: 170_000,
        "nvmlDeviceGetCudaComputeCapability": lambda g: g.cc,
        "nvmlDeviceGetMigMode": lambda g: (int(bool(g.mig_uuids)),) * 2,
        "nvmlDeviceGetMemoryBusWidth": lambda g: g.bus_width,
        "nvmlDeviceGetMaxClockInfo": lambda g, kind: g.mem_clock if kind == 2 else g.max_sm_clock,
        "nvmlDeviceGetClockInfo": lambda g, kind: 1700,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda g: g.throttle,
        "nvmlDeviceGetComputeRunningProcesses": procs,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda g: [],
    }
    for name, fn in calls.items():
        setattr(m, name, guarded(name, fn))
    return m


class RaisingNvml(types.ModuleType):
    """Every attribute is a function that raises: the worst binding imaginable."""

    def __init__(self, init_ok: bool = False):
        super().__init__("raising_nvml")
        self.init_ok = init_ok

    def __getattr__(self, name):
        if name == "nvmlInit" and self.init_ok:
            return lambda: None

        def boom(*args, **kwargs):
            raise NVMLError_LibraryNotFound(name)
        return boom


OWN_PID = os.getpid()
