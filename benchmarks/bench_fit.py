"""Proof that recommendations fit: simulated cards of 4-80 GB on one big GPU.

For each card size the process caps itself with ``torch.cuda.set_per_process_memory_fraction`` at the
card's size minus the measured CUDA context (so allocator + context = the card), asks ``recommend``
for that card, trains 20 steps and one full validation pass through the real Trainer and loader,
and records the peak and any out-of-memory. Cards run as concurrent processes (memory, not speed,
is measured), in waves whose caps fit the physical GPU.

``--graphed``: the graphed defaults. The plan is made for a card of that size as the app sees it
(benchmarks/simulated_card.py: the real GPU's compute capability, so bf16 and the CUDA graph where the
plan allows them), and the session's own memory check sees the card's free memory, not the big GPU's.
Without it, the what-if plan of the first proof (``vram_gb``: no card to ask, so fp16 and no graph).

    python benchmarks/bench_fit.py --cards 4,6,8,10,12,16,24,48 --compile off
    python benchmarks/bench_fit.py --graphed --cards 4,6,8,12,16,24,48,80 --timeout 240   # -> bench_fit_graphed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
GIB = 2**30


def worker(card: float, data: str, compile_mode: str, steps: int, graphed: bool = False) -> dict:
    import torch

    from medseg_gui.core.config import RunConfig
    from medseg_gui.core.hardware import cpu_only_snapshot
    from medseg_gui.core.planning.recommend import recommend
    from medseg_gui.core.engine.session import TrainingSession
    from simulated_card import (cap_process, plan_for_card, plan_summary, pretend_free_memory, process_used_gib,
                                repeating_datamodule_factory, step_probe)

    context = cap_process(card)
    base = RunConfig()
    base.dataset.path = data
    base.training.compile = compile_mode
    base.training.output_dir = tempfile.mkdtemp(prefix="fit_runs_")
    if graphed:
        pretend_free_memory(card)
        rec = plan_for_card(card, torch.cuda.get_device_capability(0), base)
    else:
        rec = recommend(cpu_only_snapshot(), vram_gb=card, base=base)
    cfg = rec.config
    tr = cfg.training
    tr.pretrained, tr.epochs, tr.max_steps_per_epoch, tr.num_workers = "scratch", 1, steps, 4
    tr.accelerator = "gpu"
    plan = plan_summary(rec)
    probe = step_probe()
    events = []
    result = TrainingSession(cfg, events.append, datamodule_factory=repeating_datamodule_factory(steps),
                             callbacks=[probe]).run()
    ooms = [e for e in events if type(e).__name__ == "OomRecovered"]
    started = next((e for e in events if type(e).__name__ == "RunStarted"), None)
    peak_reserved = torch.cuda.max_memory_reserved() / GIB
    nvml_used = process_used_gib()  # the allocator keeps its peak reservation: ~ the peak incl. context
    shutil.rmtree(base.training.output_dir, ignore_errors=True)  # our own temp folder (checkpoints of GBs)
    return {"card_gb": card, "variant": tr.variant, "batch": tr.batch_size, "accumulate": tr.accumulate_grad_batches,
            "image_size": cfg.dataset.image_size, "precision": tr.precision, "compile": compile_mode,
            "cuda_graphs": plan["cuda_graphs"], "graph_planned": plan["graph_planned"], **probe.seen,
            "predicted_peak_gb": rec.predicted_peak_gb, "budget_gb": rec.budget_gb,
            "runstarted_predicted_peak_gb": getattr(started, "predicted_peak_gb", None),
            "measured_peak_gb": peak_reserved + context["context_model_gib"], "peak_reserved_gib": peak_reserved,
            "context_measured_gib": context["context_measured_gib"],
            "nvml_process_used_gib_at_end": nvml_used, "oom_recoveries": len(ooms), "finished": type(result).__name__ == "RunFinished",
            "failure": getattr(result, "reason", None), "gpu": torch.cuda.get_device_name(0),
            "warnings": [e.message for e in events if type(e).__name__ == "LogMessage" and e.level == "warning"]}


def dry_run(cards: list[float], data: str, graphed: bool, steps: int, compile_mode: str = "off") -> list[dict]:
    """The worker's planning and data steps on the CPU for every card: what can break before CUDA."""
    from medseg_gui.core.config import RunConfig
    from medseg_gui.core.hardware import cpu_only_snapshot
    from medseg_gui.core.planning.recommend import recommend
    from simulated_card import plan_for_card, plan_summary, repeating_datamodule_factory, step_probe

    plans = []
    for card in cards:
        base = RunConfig()
        base.dataset.path = data
        base.training.compile = compile_mode
        rec = plan_for_card(card, (8, 6), base) if graphed else recommend(cpu_only_snapshot(), vram_gb=card, base=base)
        plan = {"card_gb": card, **plan_summary(rec)}
        dm = repeating_datamodule_factory(steps)(rec.config)
        plan["train_batches"] = len(dm.train_dataset) // rec.config.training.batch_size
        plan["val_images"] = len(dm.val_dataset) if dm.val_dataset is not None else 0
        step_probe()
        plans.append(plan)
        print(json.dumps(plan), flush=True)
    return plans


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cards", default="4,6,8,10,12,16,24,48")
    p.add_argument("--compile", default="off")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "medseg_bench_data" / "demo288"))
    p.add_argument("--timeout", type=int, default=500)
    p.add_argument("--graphed", action="store_true", help="plan as the app does for a bf16 card of that size "
                                                           "(CUDA graph where the plan allows it)")
    p.add_argument("--out", default=None, help="default benchmarks/results/bench_fit.json, or bench_fit_graphed.json "
                                               "with --graphed")
    p.add_argument("--dry-run", action="store_true", help="CPU: print each card's plan and build its data loader, "
                                                           "no training (checks the script before GPU time is spent)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / ("bench_fit_graphed.json" if args.graphed else "bench_fit.json"))
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(args.worker, args.data, args.compile, args.steps, args.graphed)), flush=True)
        return
    if not Path(args.data).exists():
        from medseg_gui.core.data.demo import generate_demo

        generate_demo(args.data, n=240, size=288)
    if args.dry_run:
        dry_run([float(c) for c in args.cards.split(",")], args.data, args.graphed, args.steps, args.compile)
        return
    import torch

    physical = torch.cuda.get_device_properties(0).total_memory / GIB * 0.95
    waves: list[list[float]] = []
    for card in sorted(float(c) for c in args.cards.split(",")):
        if waves and sum(waves[-1]) + card <= physical:
            waves[-1].append(card)
        else:
            waves.append([card])
    results, t0 = [], time.time()
    for wave in waves:
        procs = {c: subprocess.Popen([sys.executable, __file__, "--worker", str(c), "--data", args.data,
                                      "--compile", args.compile, "--steps", str(args.steps)]
                                     + (["--graphed"] if args.graphed else []),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))
                 for c in wave}
        for card, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(1, args.timeout - (time.time() - t0)))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the loader's worker processes too
                proc.communicate()
                results.append({"card_gb": card, "error": "timed out"})
                continue
            line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
            results.append(json.loads(line[7:]) if line else {"card_gb": card, "error": (out + err)[-2000:]})
            print(json.dumps(results[-1])[:400], flush=True)
            save(args, results)  # after every card: a run cut short keeps what it measured
    print(f"\n{'card':>6}{'model':>7}{'batch':>7}{'size':>6}{'pred GB':>9}{'meas GB':>9}{'err %':>7}{'use %':>7}"
          f"{'graph':>7}  result")
    for r in results:
        if "error" in r:
            print(f"{r['card_gb']:>6g}  ERROR {r['error'][-300:]}")
            continue
        err = (r["predicted_peak_gb"] - r["measured_peak_gb"]) / r["measured_peak_gb"] * 100
        use = r["measured_peak_gb"] / r["card_gb"] * 100
        r["error_pct"], r["use_pct"] = err, use
        status = "ok" if r["finished"] and not r["oom_recoveries"] else f"OOM x{r['oom_recoveries']} {r['failure'] or ''}"
        print(f"{r['card_gb']:>6g}{r['variant']:>7}{r['batch']:>7}{r['image_size']:>6}{r['predicted_peak_gb']:>9.2f}"
              f"{r['measured_peak_gb']:>9.2f}{err:>7.1f}{use:>7.0f}{str(r.get('graph_captured', '-')):>7}  {status}")
    save(args, results)
    print(f"wrote {args.out}")


def save(args: argparse.Namespace, results: list[dict]) -> None:
    from results_io import write_results

    write_results(args.out, {"benchmark": "fit", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "compile": args.compile, "graphed": args.graphed, "results": results})


if __name__ == "__main__":
    main()
