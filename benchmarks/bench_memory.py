"""Peak VRAM of our training and validation step over a grid, for calibrating ``core/planning/memory.py``.

Runs the engine's step outside Lightning (same model builder, device normalisation, channels_last,
fused AdamW, autocast + GradScaler for fp16, logits upsampled, Dice + CE), so one process can walk
a grid in minutes; ``bench_train_speed.py`` and ``bench_fit.py`` check the same peaks through the
real Trainer. Also reports the CUDA context size (NVML's per-process figure minus the allocator's
reservation), which nvidia-smi counts and the allocator does not.

    python benchmarks/bench_memory.py --out benchmarks/results/bench_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from medseg_gui.core.config import VARIANTS  # noqa: E402
from results_io import write_results  # noqa: E402

GIB = 2**30


def process_used_gib() -> float | None:
    """This process's memory on GPU 0 as NVML reports it (what nvidia-smi shows)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and isinstance(proc.usedGpuMemory, int):
                return proc.usedGpuMemory / GIB
    except Exception:
        return None
    return None


def measure(variant: str, batch: int, size: int, precision: str, classes: int = 4, steps: int = 3) -> dict:
    """The fit probe's step (core/tools/fit_probe.py), in this process, plus the context NVML reports."""
    import torch

    from medseg_gui.core.tools.fit_probe import probe_step

    torch.cuda.empty_cache()
    r = probe_step(variant, batch, size, precision, classes, steps)
    out = {"variant": variant, "batch": batch, "image_size": size, "precision": precision, "classes": classes}
    if not r["fits"]:
        return dict(out, oom=True)
    used = process_used_gib()
    out.update(train_step_s=r["train_step_s"], train_peak_allocated_gib=r["train_peak_allocated_gb"],
               train_peak_reserved_gib=r["reserved_gb"], val_peak_allocated_gib=r["val_peak_allocated_gb"],
               process_used_gib=used,
               context_gib=used - torch.cuda.memory_reserved() / GIB if used is not None else None)
    torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--sizes", default="224,288,384")
    p.add_argument("--precisions", default="bf16-mixed,32")
    p.add_argument("--classes", default="4")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_memory.json"))
    args = p.parse_args()
    import torch

    rows = []
    t0 = time.perf_counter()
    gpu, version = torch.cuda.get_device_name(0), torch.__version__
    for v in args.variants.split(","):
        for prec in args.precisions.split(","):
            for s in map(int, args.sizes.split(",")):
                for b in map(int, args.batches.split(",")):
                    for c in map(int, args.classes.split(",")):
                        r = measure(v, b, s, prec, c)
                        rows.append(r)
                        print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()}),
                              flush=True)
                        # after every row: a run cut short by a time limit keeps what it measured
                        doc = {"benchmark": "memory_grid", "gpu": gpu, "torch": version,
                               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - t0,
                               "rows": rows}
                        write_results(args.out, doc)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
