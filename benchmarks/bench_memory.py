"""Peak VRAM of our training and validation step over a grid, for calibrating ``core/memory.py``.

Runs the engine's step outside Lightning (same model builder, device normalisation, channels_last,
fused AdamW, autocast + GradScaler for fp16, logits upsampled, Dice + CE), so one process can walk
a grid in minutes; ``bench_train_speed.py`` and ``bench_fit.py`` check the same peaks through the
real Trainer. Also reports the CUDA context size (NVML's per-process figure minus the allocator's
reservation), which nvidia-smi counts and the allocator does not.

    python benchmarks/bench_memory.py --out benchmarks/results/bench_memory.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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
    import torch

    from medseg_gui.core.config import RunConfig
    from medseg_gui.core.data.normalize import to_model_input
    from medseg_gui.core.losses import dice_ce_loss, upsample_logits
    from medseg_gui.core.model import build_model

    cfg = RunConfig()
    cfg.training.variant, cfg.training.pretrained = variant, "scratch"
    cfg.dataset.num_classes = classes
    cfg.dataset.class_names = [str(i) for i in range(classes)]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build_model(cfg).cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    images = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8, device="cuda")
    masks = torch.randint(0, classes, (batch, size, size), dtype=torch.long, device="cuda")

    def loss_of(x):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = upsample_logits(model(pixel_values=x).logits, (size, size))
            return dice_ce_loss(logits, masks, classes)

    out = {"variant": variant, "batch": batch, "image_size": size, "precision": precision, "classes": classes}
    try:
        t = time.perf_counter()
        for _ in range(steps):
            x = to_model_input(images).contiguous(memory_format=torch.channels_last)
            loss = loss_of(x)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out["train_step_s"] = (time.perf_counter() - t) / steps
        out["train_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        out["train_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
        out["process_used_gib"] = process_used_gib()
        out["context_gib"] = (out["process_used_gib"] - torch.cuda.memory_reserved() / GIB
                              if out["process_used_gib"] is not None else None)
        torch.cuda.reset_peak_memory_stats()
        model.eval()
        with torch.no_grad():
            loss_of(to_model_input(images).contiguous(memory_format=torch.channels_last))
        torch.cuda.synchronize()
        out["val_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        out["val_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    except torch.OutOfMemoryError:
        out["oom"] = True
    finally:
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="b0,b1,b2,b3,b4,b5")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--sizes", default="224,288,384")
    p.add_argument("--precisions", default="bf16-mixed,32")
    p.add_argument("--classes", default="4")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_memory.json"))
    args = p.parse_args()
    import torch

    rows = []
    t0 = time.perf_counter()
    for v in args.variants.split(","):
        for prec in args.precisions.split(","):
            for s in map(int, args.sizes.split(",")):
                for b in map(int, args.batches.split(",")):
                    for c in map(int, args.classes.split(",")):
                        r = measure(v, b, s, prec, c)
                        rows.append(r)
                        print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()}),
                              flush=True)
    doc = {"benchmark": "memory_grid", "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - t0, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out} in {doc['seconds']:.0f}s")


if __name__ == "__main__":
    main()
