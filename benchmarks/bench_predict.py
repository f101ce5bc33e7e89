"""End-to-end prediction time for one 288 px slice on this machine's CPU (or GPU with --device cuda).

What a viewer click costs: read the file (16-bit PNG, as the Kaggle slices are), window to uint8,
resize to the model's 288 px, normalise, forward, upsample the logits to the slice and argmax, then
colour and blend the overlay. Scratch weights (no download): the time does not depend on the values.
Median of N runs after warm-up; results as a table and ``benchmarks/results/bench_predict.json``.

    python benchmarks/bench_predict.py [--variants b0 b2 b4] [--runs 20] [--warmup 3] [--size 288]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TARGET_B0_MS = 150.0


def make_slice(path: Path, size: int) -> Path:
    """A 16-bit grey slice with smooth structure and noise (PNG decode cost like a real scan)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = ((xx - 0.5) ** 2 / 0.16 + (yy - 0.5) ** 2 / 0.1) < 1
    img = body * (9000 + 3000 * np.sin(12 * xx) * np.cos(9 * yy)) + rng.normal(0, 400, (size, size))
    Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(path)
    return path


def bench_variant(variant: str, image: Path, size: int, runs: int, warmup: int, device: str, root: Path) -> dict:
    import torch
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core import config as cfg
    from medseg_gui.core.engine.bundle import save_bundle
    from medseg_gui.core.imaging.images import read_image
    from medseg_gui.core.engine.inference import Predictor
    from medseg_gui.core.imaging.model_input import slice_to_uint8
    from medseg_gui.core.engine.model import scratch_config
    from medseg_gui.core.imaging.predict_export import overlay_picture

    config = cfg.RunConfig()
    config.dataset.image_size = size
    config.training.variant = variant
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(scratch_config(variant, config.dataset.num_classes))
    bundle = save_bundle(model, config, root / f"bundle_{variant}")
    t = time.perf_counter()
    predictor = Predictor.from_path(bundle, device=device)
    load_s = time.perf_counter() - t
    stages: dict[str, list[float]] = {k: [] for k in ("read_ms", "preprocess_ms", "forward_ms",
                                                      "upsample_argmax_ms", "overlay_ms", "total_ms")}
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        raw = read_image(image)
        t1 = time.perf_counter()
        pred = predictor.predict_slice(raw)
        t2 = time.perf_counter()
        picture = overlay_picture(slice_to_uint8(raw), pred.labels, predictor.class_colors, 0.5)
        t3 = time.perf_counter()
        assert picture.shape == raw.shape + (3,)
        if i < warmup:
            continue
        stages["read_ms"].append((t1 - t0) * 1e3)
        stages["preprocess_ms"].append(pred.timings["preprocess_ms"] + pred.timings["to_tensor_ms"])
        stages["forward_ms"].append(pred.timings["forward_ms"])
        stages["upsample_argmax_ms"].append(pred.timings["upsample_argmax_ms"])
        stages["overlay_ms"].append((t3 - t2) * 1e3)
        stages["total_ms"].append((t3 - t0) * 1e3)
    out = {"variant": variant, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "model_load_s": round(load_s, 2)}
    out.update({k: round(statistics.median(v), 1) for k, v in stages.items()})
    out["total_ms_min"] = round(min(stages["total_ms"]), 1)
    out["total_ms_max"] = round(max(stages["total_ms"]), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["b0", "b2", "b4"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", type=int, default=288)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice). On a shared, busy machine 1 thread "
                             "is steadier: OpenMP threads that spin while other processes hold the cores "
                             "can make one forward pass many times slower")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_predict.json"))
    args = parser.parse_args()

    import torch

    from medseg_gui.core.atomic import atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        image = make_slice(root / "slice.png", args.size)
        rows = [bench_variant(v, image, args.size, args.runs, args.warmup, args.device, root) for v in args.variants]
    header = ("variant", "params_m", "read_ms", "preprocess_ms", "forward_ms", "upsample_argmax_ms", "overlay_ms",
              "total_ms")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r[k]) for k in header))
    b0 = next((r for r in rows if r["variant"] == "b0"), None)
    result = {
        "what": f"one {args.size}x{args.size} 16-bit PNG slice end to end: read, window, resize to {args.size}, "
                "normalise, forward, upsample logits + argmax, overlay colour + blend",
        "device": args.device, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "load_average_1m_before_after": [None if load_before is None else round(load_before[0], 2),
                                         round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None],
        "runs": args.runs, "warmup": args.warmup, "statistic": "median",
        "target_b0_ms": TARGET_B0_MS,
        "b0_meets_target": None if b0 is None else b0["total_ms"] <= TARGET_B0_MS,
        "results": rows,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
