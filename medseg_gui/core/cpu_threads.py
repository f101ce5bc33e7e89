"""How many CPU threads and loader workers a CPU training run uses, chosen so it survives a busy machine.

Why this exists: PyTorch's default is one intra-op thread per core, and its OpenMP parallel regions end
in a barrier that waits for the slowest thread. When anything else runs on the machine (a second
training, a browser, other users of a shared server), one of those threads is descheduled and every
other thread spins at the barrier until it comes back; each convolution then costs a scheduler time
slice instead of microseconds. A SegFormer step measured 5697 ms with the default threads on a busy
2-core machine against 252 ms with OMP_NUM_THREADS=1 (23x). Fewer threads than cores lose a little
when the machine is idle and avoid that collapse when it is not.

The rule (``plan_cpu_threads``, pure, unit-tested; ``configure_cpu_training`` applies it):

* usable CPUs = the CPUs this process may run on (``os.sched_getaffinity``: taskset, cgroups cpusets,
  Slurm; a container's CPU quota), and no more than the physical cores (a hyperthread shares its core's FPU: GEMM-bound threads
  gain nothing from it and add one more thread to wait for);
* busy CPUs = what other processes use right now: system CPU use sampled for 0.25 s (psutil), rounded
  to whole CPUs. Not the 1-minute load average: it lags a minute behind both when others start and
  when they stop;
* loader workers: at most what the config asks for, and on the CPU path at most one, and none when
  fewer than 3 CPUs are free. A CPU training step takes hundreds of milliseconds, decoding and
  augmenting its batch a few; one worker hides that, more only take cores from the model;
* intra-op threads = free CPUs minus loader workers, shared among the training processes (DDP on the
  CPU), at least 1; inter-op threads = 1 (SegFormer's graph has no parallel branches to run).

``MEDSEG_CPU_THREADS`` (a number) or ``OMP_NUM_THREADS`` set by the user win: they know their machine.
The choice is made once, at the start of the run; ``benchmarks/bench_cpu_threads.py`` measures it
against the default on an idle and on a loaded machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medseg_gui.core.words import plural

SAMPLE_S = 0.25


@dataclass(frozen=True)
class CpuPlan:
    threads: int  # torch.set_num_threads, per training process
    interop_threads: int  # torch.set_num_interop_threads
    loader_workers: int  # DataLoader worker processes
    usable: int  # CPUs this process may use (affinity, physical cores)
    busy: int  # CPUs in use by other processes when the plan was made
    why: str

    def describe(self) -> str:
        return (f"CPU training with {plural(self.threads, 'thread')} and {plural(self.loader_workers, 'loader worker')}: "
                f"{self.why}")


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this container (cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``), in CPUs; None if
    unlimited. ``docker --cpus=2`` or a Kubernetes limit leaves every core in the affinity mask but
    lets the process use only two cores' worth of time: threads beyond that stall exactly like on a busy
    machine."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path(root, "cpu", "cpu.cfs_quota_us").read_text())
        period = int(Path(root, "cpu", "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask, container quota), capped at the physical cores."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        allowed = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        allowed = min(allowed, max(1, int(limit)))
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 — psutil missing or unsupported platform
        physical = None
    return max(1, min(allowed, physical) if physical else allowed)


def busy_cpus(sample_s: float = SAMPLE_S) -> float:
    """CPUs' worth of work other processes are doing now (0 when it cannot be measured).

    Sampled while this process is still setting up (it is near idle then), so it counts the others.
    """
    try:
        import psutil

        percent = psutil.cpu_percent(interval=sample_s)
        return percent / 100.0 * (psutil.cpu_count() or 1)
    except Exception:  # noqa: BLE001
        return 0.0


def plan_cpu_threads(requested_workers: int, *, processes: int = 1, usable: int | None = None,
                     busy: float | None = None, environ: dict[str, str] | None = None) -> CpuPlan:
    """Threads and loader workers for CPU training (see the module docstring for the rule)."""
    env = os.environ if environ is None else environ
    forced = _forced_threads(env)
    usable = usable_cpus() if usable is None else max(1, usable)
    if busy is None:  # measuring takes SAMPLE_S: not when the user fixed the count
        busy = 0.0 if forced is not None else busy_cpus()
    busy_n = int(busy + 0.5)
    busy_n = max(0, min(busy_n, usable - 1))  # the run gets at least one CPU whatever the load
    free = usable - busy_n
    workers = min(max(0, requested_workers), 1 if free >= 3 else 0)
    if forced is not None:
        return CpuPlan(forced[0], 1, workers, usable, busy_n, f"set by {forced[1]}")
    threads = max(1, (free - workers) // max(1, processes))
    why = (f"{usable} usable core(s), {busy_n} busy with other work" +
           (f", {processes} training processes" if processes > 1 else ""))
    return CpuPlan(threads, 1, workers, usable, busy_n, why)


def _forced_threads(env) -> tuple[int, str] | None:
    """(threads, variable) when the user fixed the thread count in the environment."""
    for key in ("MEDSEG_CPU_THREADS", "OMP_NUM_THREADS"):
        text = (env.get(key) or "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text), key
    return None


def apply_cpu_plan(plan: CpuPlan) -> None:
    """Set PyTorch's thread pools. The inter-op pool can only be sized before its first use; if it
    already started (a second run in the same process) its size stays, which is harmless."""
    import torch

    torch.set_num_threads(plan.threads)
    if torch.get_num_interop_threads() != plan.interop_threads:
        try:
            torch.set_num_interop_threads(plan.interop_threads)
        except RuntimeError:
            pass


def configure_cpu_training(requested_workers: int, *, processes: int = 1,
                           log: Callable[[str, str], None] | None = None) -> CpuPlan:
    """Choose and apply the CPU plan for a training run (or a tool's trial steps); says what it chose."""
    plan = plan_cpu_threads(requested_workers, processes=processes)
    apply_cpu_plan(plan)
    if log is not None:
        log("info", plan.describe())
    return plan
