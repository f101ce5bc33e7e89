"""CPU training speed with PyTorch's default thread count against ``core.cpu_threads``' choice, on an
idle machine and on a loaded one (a busy-loop process per usable CPU), in one command.

Each measurement runs in a fresh child process (thread pools can only be sized once per process): a
SegFormer-b0 from scratch, AdamW, Dice+CE loss, ``--batch`` images of ``--size`` px, ``--warmup``
steps then the median of ``--steps`` timed steps (stopped early after ``--cap-s`` seconds). "default"
sets nothing (PyTorch: one thread per core); "planned" calls ``configure_cpu_training`` exactly as a CPU
training run does, so in the loaded condition it sees the busy loops. Runs alternate default/planned
``--repeats`` times so a drift in the machine's load hits both.

    python benchmarks/bench_cpu_threads.py      # table + benchmarks/results/bench_cpu_threads.json

On a shared machine the "idle" condition is only as idle as the neighbours allow; the JSON records
the load average and CPU use seen at the start of every condition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MEDSEG_CPU_THREADS")


def child(mode: str, size: int, batch: int, warmup: int, steps: int, cap_s: float) -> dict:
    sys.path.insert(0, str(ROOT))
    plan = None
    if mode == "planned":
        from medseg_gui.core.cpu_threads import configure_cpu_training

        plan = configure_cpu_training(requested_workers=4)
    import torch

    from medseg_gui.core import config as cfg
    from medseg_gui.core.data.normalize import to_model_input
    from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits
    from medseg_gui.core.engine.model import build_model

    torch.manual_seed(0)
    config = cfg.RunConfig()
    config.training.variant, config.training.pretrained, config.dataset.image_size = "b0", "scratch", size
    model = build_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x8 = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8)
    masks = torch.randint(0, 4, (batch, size, size))

    def step() -> None:
        logits = upsample_logits(model(pixel_values=to_model_input(x8)).logits, (size, size))
        dice_ce_loss(logits, masks, 4).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - started < cap_s):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1000)
    return {"mode": mode, "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "plan": None if plan is None else plan.describe(), "steps_timed": len(times),
            "ms_per_step_median": round(statistics.median(times), 1), "ms_per_step_all": [round(t, 1) for t in times]}


def busy_loop() -> None:  # a background process that keeps one CPU busy
    while True:
        pass


def run_child(mode: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    cmd = [sys.executable, __file__, "--child", mode, "--size", str(args.size), "--batch", str(args.batch),
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--cap-s", str(args.cap_s)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.cap_s * 4 + 300)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_load() -> dict:
    import psutil

    return {"loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "cpu_percent_1s": psutil.cpu_percent(interval=1.0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=("default", "planned"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cap-s", type=float, default=90.0, help="stop timing a run after this many seconds")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--busy", type=int, default=None, help="busy-loop processes when loaded (default: one per CPU)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_cpu_threads.json")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch, args.warmup, args.steps, args.cap_s)), flush=True)
        return 0

    import multiprocessing as mp

    import psutil

    sys.path.insert(0, str(ROOT))
    from medseg_gui.core.cpu_threads import usable_cpus

    n_busy = args.busy or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    conditions: dict[str, dict] = {}
    for condition in ("idle", "loaded"):
        loops = []
        if condition == "loaded":
            ctx = mp.get_context("spawn")
            loops = [ctx.Process(target=busy_loop, daemon=True) for _ in range(n_busy)]
            for p in loops:
                p.start()
            time.sleep(2.0)
        try:
            load = machine_load()
            runs: dict[str, list[dict]] = {"default": [], "planned": []}
            for i in range(args.repeats):
                for mode in (("default", "planned") if i % 2 == 0 else ("planned", "default")):
                    result = run_child(mode, args)
                    runs[mode].append(result)
                    print(f"{condition:7s} {mode:8s} threads={result['threads']:2d} "
                          f"{result['ms_per_step_median']:9.1f} ms/step ({result['steps_timed']} steps)"
                          + (f"  [{result['plan']}]" if result["plan"] else ""), flush=True)
        finally:
            for p in loops:
                p.terminate()
            for p in loops:
                p.join(10)
        conditions[condition] = {
            "load_at_start": load, "busy_loop_processes": len(loops),
            "default_ms_per_step": statistics.median(r["ms_per_step_median"] for r in runs["default"]),
            "planned_ms_per_step": statistics.median(r["ms_per_step_median"] for r in runs["planned"]),
            "runs": runs}
        if condition == "idle":
            time.sleep(1.0)
    for name, c in conditions.items():
        c["speedup_planned_vs_default"] = round(c["default_ms_per_step"] / c["planned_ms_per_step"], 2)
        print(f"{name}: default {c['default_ms_per_step']:.1f} ms/step, planned {c['planned_ms_per_step']:.1f} "
              f"ms/step (x{c['speedup_planned_vs_default']})")
    result = {
        "benchmark": "CPU training step: PyTorch default threads vs core.cpu_threads, idle vs loaded",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/bench_cpu_threads.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "physical_cores": psutil.cpu_count(logical=False), "usable_cpus": usable_cpus(),
                    "python": platform.python_version(), "torch": __import__("torch").__version__},
        "workload": {"model": "SegFormer-b0 (scratch)", "image_size": args.size, "batch": args.batch,
                     "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats},
        "conditions": conditions,
    }
    from results_io import write_results

    write_results(args.out, result)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
