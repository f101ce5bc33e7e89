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


def make_nvml(gpus: list[FakeGpu], driver: str = "550.54") -> types.SimpleNamespace:
    """A module-like object; calls listed in a GPU's ``unsupported`` raise NotSupported."""

    def guarded(name, fn):
        def call(handle, *args):
            if name in gpus[handle].unsupported:
                raise NVMLError_NotSupported(name)
            return fn(gpus[handle], *args)
        return call

    mem = lambda g: types.SimpleNamespace(total=int(g.total_gb * GIB), used=int(g.used_gb * GIB),
                                          free=int((g.total_gb - g.used_gb) * GIB))
    procs = lambda g: [types.SimpleNamespace(pid=p, usedGpuMemory=int(gb * GIB)) for p, gb in g.processes]
    m = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        nvmlInit=lambda: None,
        nvmlSystemGetDriverVersion=lambda: driver,
        nvmlSystemGetCudaDriverVersion=lambda: 12040,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda i: i,
    )
    calls = {
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetUUID": lambda g: "GPU-fake",
        "nvmlDeviceGetMemoryInfo": mem,
        "nvmlDeviceGetUtilizationRates": lambda g: types.SimpleNamespace(gpu=g.util, memory=10),
        "nvmlDeviceGetTemperature": lambda g, sensor: g.temp,
        "nvmlDeviceGetPowerUsage": lambda g: g.power_mw,
        "nvmlDeviceGetEnforcedPowerLimit": lambda g: 170_000,
        "nvmlDeviceGetCudaComputeCapability": lambda g: g.cc,
        "nvmlDeviceGetMigMode": lambda g: (0, 0),
        "nvmlDeviceGetMemoryBusWidth": lambda g: g.bus_width,
        "nvmlDeviceGetMaxClockInfo": lambda g, kind: g.mem_clock if kind == 2 else 1800,
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
