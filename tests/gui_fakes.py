"""Hand-built hardware snapshots for the GUI tests (no driver, no GPU needed)."""

from __future__ import annotations

from medseg_gui.core.hardware import GpuInfo, HardwareSnapshot, cpu_only_snapshot


def gpu(index: int = 0, name: str = "NVIDIA GeForce RTX 3060", total: float = 12.0, used: float = 2.6,
        ours: float = 0.0, util: float | None = 37.0, temp: float | None = 61.0,
        cc: tuple[int, int] | None = (8, 6)) -> GpuInfo:
    return GpuInfo(index=index, name=name, uuid=f"GPU-{index}", total_gb=total, used_gb=used,
                   free_gb=None if total is None or used is None else total - used,
                   utilization_pct=util, temperature_c=temp, power_w=95.0, power_limit_w=170.0,
                   compute_capability=cc, sm_clock_mhz=1700, used_by_this_process_gb=ours)


def snapshot(*gpus: GpuInfo) -> HardwareSnapshot:
    return HardwareSnapshot(gpus=list(gpus), cpu_count=8, cpu_name="Test CPU", ram_total_gb=32.0,
                            ram_available_gb=20.0, driver_version="550.54", cuda_driver_version="12.4")


def cpu_snapshot() -> HardwareSnapshot:
    snap = cpu_only_snapshot("no NVIDIA driver found (libnvidia-ml is missing): training will use the CPU")
    snap.ram_total_gb, snap.ram_available_gb = 16.0, 10.0
    return snap
