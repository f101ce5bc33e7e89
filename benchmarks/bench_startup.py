"""Launch-to-first-paint of the desktop app, over several fresh processes.

    python benchmarks/bench_startup.py [--runs 7] [--platform offscreen]

Each run starts ``python -m medseg_gui --self-test`` as a new process (cold interpreter, warm OS
file cache after the first run) and reads its JSON line. Three numbers per run:

- ``first_paint_ms``: process age when the first paint pass finished, from the child's own /proc
  start time (interpreter start-up included);
- ``since_import_ms``: from the app module's first line to the paint (our code + Qt only);
- ``from_spawn_ms``: wall clock from the parent's ``Popen`` to the child's paint timestamp (adds
  fork/exec), the closest to what a user sees after double-clicking.

Also records which heavy modules (torch, lightning, transformers, albumentations) were loaded at
first paint: all must be False. Prints a table and writes ``benchmarks/results/bench_startup.json``.

Target: first paint <= 1500 ms on the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 1500.0


def one_run(qpa: str) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM=qpa, PYTHONPATH=str(ROOT),
               MEDSEG_HOME=tempfile.mkdtemp(prefix="medseg-bench-home-"))
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-m", "medseg_gui", "--self-test"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"self-test failed (exit {proc.returncode}):\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"first_paint_ms": data["first_paint_ms"],
            "since_import_ms": data["first_paint_ms_since_app_import"],
            "from_spawn_ms": round((data["paint_epoch"] - spawned) * 1000, 1),
            "heavy_modules_loaded": data["heavy_modules_loaded"],
            "qt": data["qt"], "python": data["python"], "platform": data["platform"]}


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM for the child (default offscreen)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_startup.json")
    args = parser.parse_args()

    runs = [one_run(args.platform) for _ in range(args.runs)]
    keys = ("first_paint_ms", "since_import_ms", "from_spawn_ms")
    stats = {k: summary([r[k] for r in runs]) for k in keys}
    heavy_any = {name: any(r["heavy_modules_loaded"][name] for r in runs)
                 for name in runs[0]["heavy_modules_loaded"]}
    result = {
        "benchmark": "startup first paint",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "os": platform.platform(), "python": runs[0]["python"], "qt": runs[0]["qt"],
                    "qpa": runs[0]["platform"]},
        "runs": runs,
        "stats_ms": stats,
        "heavy_modules_loaded_in_any_run": heavy_any,
        "target_ms": TARGET_MS,
        "meets_target": stats["first_paint_ms"]["median"] <= TARGET_MS and
                        stats["first_paint_ms"]["max"] <= TARGET_MS and not any(heavy_any.values()),
    }
    print(f"{'measure':<18}{'min':>9}{'median':>9}{'max':>9}   ({args.runs} runs, {os.cpu_count()} CPUs, "
          f"QPA {runs[0]['platform']})")
    for k in keys:
        s = stats[k]
        print(f"{k:<18}{s['min']:>9.0f}{s['median']:>9.0f}{s['max']:>9.0f}")
    print(f"heavy modules loaded at first paint: {heavy_any}")
    print(f"target <= {TARGET_MS:.0f} ms: {'met' if result['meets_target'] else 'NOT met'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
