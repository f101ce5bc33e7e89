"""Images/s through the training loader at 288 px with the full augmentation set, per worker process.

    python benchmarks/bench_loader.py [--size 288] [--n 256] [--batch 32] [--workers 0 1 2] [--images 1536]

Generates demo PNGs at the training size into a temporary folder (so decode + augment is measured,
not a resize from a larger image), builds the real DataModule (decode, albumentations, collate into
uint8 tensors, worker processes) and times whole batches after a warm-up batch (worker start-up
excluded). 0 workers = everything on the calling process. Besides wall-clock img/s it reports images
per CPU-second of the loading processes (worker processes, or this one with 0 workers), which stays
meaningful on a busy shared machine. Prints a table and writes ``benchmarks/results/bench_loader.json``.

Target: >= 400 images/s per worker core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medseg_gui.core.config import RunConfig  # noqa: E402
from medseg_gui.core.data.datamodule import build_datamodule  # noqa: E402
from medseg_gui.core.data.demo import generate_demo  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_loader.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(root: Path, size: int, batch: int, workers: int, images: int) -> dict:
    config = RunConfig()
    config.dataset.path = str(root)
    config.dataset.image_size = size
    config.training.batch_size = batch
    config.training.num_workers = workers
    config.training.accelerator = "cpu"
    dm = build_datamodule(config)
    loader = dm.train_dataloader()
    if workers == 0:
        import cv2

        cv2.setNumThreads(1)  # what a worker does; keeps the 0-worker figure a one-core figure
    it = iter(loader)
    next(it)  # warm-up: worker start-up, first imports, page cache
    cpu0 = _cpu_seconds(workers)
    done = 0
    start = time.perf_counter()
    while done < images:
        try:
            x, _ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += x.shape[0]
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(workers) - cpu0
    rate = done / elapsed
    row = {"workers": workers, "images": done, "seconds": round(elapsed, 3), "images_per_s": round(rate, 1),
           "images_per_s_per_worker": round(rate / max(1, workers), 1),
           "loading_cpu_seconds": round(cpu, 3),
           "images_per_cpu_second": round(done / cpu, 1) if cpu > 0 else None}
    del it, loader
    return row


def _cpu_seconds(workers: int) -> float:
    """CPU time spent loading: the worker processes' (workers > 0) or this process's (0 workers).

    On a shared machine wall-clock img/s mostly measures the neighbours; images per CPU-second of
    the loading processes is the per-core figure the target is about.
    """
    import psutil

    me = psutil.Process()
    if workers == 0:
        t = me.cpu_times()
        return t.user + t.system
    total = 0.0
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=288)
    ap.add_argument("--n", type=int, default=256, help="demo slices to generate")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--images", type=int, default=1536, help="images timed per setting")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import albumentations
    import cv2
    import torch

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = generate_demo(Path(tmp) / "demo", n=args.n, size=args.size, seed=0)
        rows = [measure(root, args.size, args.batch, w, args.images) for w in args.workers]
    result = {
        "benchmark": "training loader: PNG decode + full augmentation + collate, uint8 grey",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "albumentations": albumentations.__version__, "opencv": cv2.__version__,
        "image_size": args.size, "batch_size": args.batch, "dataset_slices": args.n,
        "augmentations": ["Resize", "HorizontalFlip", "VerticalFlip", "Affine", "RandomBrightnessContrast",
                          "CoarseDropout"],
        "target_images_per_s_per_worker": 400, "results": rows,
    }
    print(f"CPU: {result['cpu_model']} ({result['cpu_count']} cores); {args.size} px, batch {args.batch}")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    result["load_average_1min_after"] = load
    print(f"{'workers':>7} {'img/s':>9} {'img/s/worker':>13} {'img/CPU-s':>10}")
    for r in rows:
        print(f"{r['workers']:>7} {r['images_per_s']:>9.1f} {r['images_per_s_per_worker']:>13.1f} "
              f"{r['images_per_cpu_second'] or float('nan'):>10.1f}")
    if load is not None and load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores - other processes share the CPU, so "
              "wall-clock img/s is low; img/CPU-s is the per-core figure")
    from results_io import write_results

    write_results(args.out, result)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
