"""How close the Training page's remaining-time estimate is to the real remaining time, on a CPU run.

A real training (SegFormer-b0 from scratch on the demo data, validation every epoch) runs in this
process; every event goes through the same ``LiveMetrics`` the GUI and the CLI use, and at each step
event we record the ETA they would show. When the run has ended, the real remaining time of each of
those moments is known, so the error is measured, not assumed. Reported from 5 % of the run on
(the target is ±10 %), ignoring the last 2 s where any small absolute error is a large relative one.

    python benchmarks/bench_eta.py --out benchmarks/results/bench_eta.json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=160, help="demo cases (slices split train/valid)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results/bench_eta.json")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    from medseg_gui.core import config as cfg
    from medseg_gui.core.data.demo import CLASS_NAMES, generate_demo
    from medseg_gui.core.engine.session import TrainingSession
    from medseg_gui.core.events import StepMetrics
    from medseg_gui.core.live_metrics import LiveMetrics

    samples: list[tuple[float, float, float]] = []  # (wall time, ETA shown, overall progress)
    live = LiveMetrics()

    def sink(event) -> None:
        live.apply(event)
        if isinstance(event, StepMetrics):
            now = time.time()
            eta = live.remaining_s(now)
            if eta is not None:
                samples.append((now, eta, live.overall_progress))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_demo(root / "data", n=args.images, size=args.size, seed=0)
        config = cfg.RunConfig()
        cfg.set_num_classes(config, 4, list(CLASS_NAMES))
        config.dataset.path = str(root / "data")
        config.dataset.image_size = args.size
        tr = config.training
        tr.variant, tr.pretrained, tr.batch_size, tr.epochs = "b0", "scratch", args.batch, args.epochs
        tr.accelerator, tr.precision, tr.compile, tr.num_workers = "cpu", "32", "off", 0
        tr.output_dir = str(root / "runs")
        start = time.time()
        result = TrainingSession(config, sink).run()
        end = time.time()
    started = [s for s in samples if s[2] >= 0.05 and end - s[0] > 2.0]
    errors = [abs(eta - (end - t)) / (end - t) for t, eta, _ in started]
    report = {
        "benchmark": "eta", "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "terminal": type(result).__name__, "run_s": round(end - start, 1), "epochs": args.epochs,
        "samples": len(started),
        "median_abs_error": round(statistics.median(errors), 4) if errors else None,
        "p90_abs_error": round(sorted(errors)[int(0.9 * (len(errors) - 1))], 4) if errors else None,
        "share_within_10pct": round(sum(e <= 0.10 for e in errors) / len(errors), 3) if errors else None,
        "target": "within ±10 % from 5 % of the run on",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
