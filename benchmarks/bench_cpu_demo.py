"""The CPU demo epoch with SegFormer's fast path against transformers' own modules, in one command.

Why: the fast path (core/engine/fast_segformer.py) was made for the GPU; a user without one must not
pay for it. Each run is the public command line, ``medseg train --demo --accelerator cpu``, in a
fresh process, alternating the two (``MEDSEG_FAST_PATH=on|off``) so a machine that slows down over
the command slows both; the epoch time is the session's own (``EpochMetrics.epoch_time_s`` in the
run's events.jsonl: training and validation of one epoch).

    python benchmarks/bench_cpu_demo.py --repeats 2 --epochs 1
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT))
PATHS = ("on", "off")


def epoch_times(run_dir: Path) -> list[float]:
    """The ``epoch_time_s`` of every EpochMetrics event of a run folder."""
    times = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("type") == "EpochMetrics" and event.get("epoch_time_s") is not None:
            times.append(float(event["epoch_time_s"]))
    return times


def run_once(fast_path: str, epochs: int, root: Path, timeout: float) -> dict:
    run_dir = root / f"run-{fast_path}-{time.monotonic_ns()}"
    env = dict(os.environ, MEDSEG_FAST_PATH=fast_path, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "medseg_gui.cli", "train", "--demo", "--accelerator", "cpu",
           "--pretrained", "scratch", "--epochs", str(epochs), "--run-dir", str(run_dir)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - start
    out = {"fast_path": fast_path, "rc": proc.returncode, "wall_s": round(wall, 2)}
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout)[-1500:]
        return out
    out["epoch_times_s"] = [round(t, 2) for t in epoch_times(run_dir)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2, help="runs per path (alternating)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_cpu_demo.json"))
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_cpu_demo_") as tmp:
        for i in range(args.repeats):
            for path in PATHS:
                res = run_once(path, args.epochs, Path(tmp), args.timeout)
                runs.append(res)
                print(json.dumps(res), flush=True)
    summary = {}
    for path in PATHS:
        times = [t for r in runs if r["fast_path"] == path for t in r.get("epoch_times_s", [])]
        summary[path] = {"epochs": len(times), "median_epoch_s": statistics.median(times) if times else None}
    on, off = summary["on"]["median_epoch_s"], summary["off"]["median_epoch_s"]
    doc = {"benchmark": "cpu_demo_epoch", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "command": "python benchmarks/bench_cpu_demo.py" + "".join(f" {a}" for a in sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                       "python": platform.python_version()},
           "what": "medseg train --demo --accelerator cpu (the CPU tier: SegFormer-b0, 224 px, batch 1), epoch "
                   "time from the run's events (training + validation), fast path on vs off, alternating",
           "summary": summary, "ratio_off_over_on": (off / on) if on and off else None, "runs": runs}
    from results_io import write_results

    write_results(args.out, doc)
    print(json.dumps(summary), f"off/on = {doc['ratio_off_over_on']}", f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
