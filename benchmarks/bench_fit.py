"""Proof that recommendations fit: simulated cards of 4-80 GB on one big GPU.

For each card size the process caps itself with ``torch.cuda.set_per_process_memory_fraction`` at the
card's size minus the measured CUDA context (so allocator + context = the card), asks ``recommend``
for that card, trains 20 steps and one full validation pass through the real Trainer and loader,
and records the peak and any out-of-memory. Cards run as concurrent processes (memory, not speed,
is measured), in waves whose caps fit the physical GPU.

    python benchmarks/bench_fit.py --cards 4,6,8,10,12,16,24,48 --compile off
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GIB = 2**30


def worker(card: float, data: str, compile_mode: str, steps: int) -> dict:
    import torch

    from medseg_gui.core.config import RunConfig
    from medseg_gui.core.hardware import cpu_only_snapshot
    from medseg_gui.core.planning.memory import default_memory_model
    from medseg_gui.core.planning.recommend import recommend
    from medseg_gui.core.engine.session import TrainingSession

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    model = default_memory_model()
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    torch.cuda.set_per_process_memory_fraction((card - model.context_gb) / total)
    base = RunConfig()
    base.dataset.path = data
    base.training.compile = compile_mode
    base.training.output_dir = tempfile.mkdtemp(prefix="fit_runs_")
    rec = recommend(cpu_only_snapshot(), vram_gb=card, base=base)
    cfg = rec.config
    tr = cfg.training
    tr.pretrained, tr.epochs, tr.max_steps_per_epoch, tr.num_workers = "scratch", 1, steps, 4
    tr.accelerator = "gpu"

    def datamodule_factory(config):
        from medseg_gui.core.data.datamodule import build_datamodule

        dm = build_datamodule(config)
        dm.prepare()
        pairs = dm.train_dataset.pairs
        need = steps * config.training.batch_size
        dm.train_dataset.pairs = pairs * max(1, -(-need // len(pairs)))
        return dm

    events = []
    result = TrainingSession(cfg, events.append, datamodule_factory=datamodule_factory).run()
    ooms = [e for e in events if type(e).__name__ == "OomRecovered"]
    peak_reserved = torch.cuda.max_memory_reserved() / GIB
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_memory import process_used_gib

    nvml_used = process_used_gib()  # the allocator keeps its peak reservation: ~ the peak incl. context
    return {"card_gb": card, "variant": tr.variant, "batch": tr.batch_size, "accumulate": tr.accumulate_grad_batches,
            "image_size": cfg.dataset.image_size, "precision": tr.precision, "compile": compile_mode,
            "predicted_peak_gb": rec.predicted_peak_gb, "budget_gb": rec.budget_gb,
            "measured_peak_gb": peak_reserved + model.context_gb, "peak_reserved_gib": peak_reserved,
            "nvml_process_used_gib_at_end": nvml_used, "oom_recoveries": len(ooms), "finished": type(result).__name__ == "RunFinished",
            "failure": getattr(result, "reason", None), "gpu": torch.cuda.get_device_name(0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cards", default="4,6,8,10,12,16,24,48")
    p.add_argument("--compile", default="off")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "medseg_bench_data" / "demo288"))
    p.add_argument("--timeout", type=int, default=500)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_fit.json"))
    args = p.parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(args.worker, args.data, args.compile, args.steps)), flush=True)
        return
    if not Path(args.data).exists():
        from medseg_gui.core.data.demo import generate_demo

        generate_demo(args.data, n=240, size=288)
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
                                      "--compile", args.compile, "--steps", str(args.steps)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"))
                 for c in wave}
        for card, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=max(1, args.timeout - (time.time() - t0)))
            except subprocess.TimeoutExpired:
                proc.kill()
                results.append({"card_gb": card, "error": "timed out"})
                continue
            line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
            results.append(json.loads(line[7:]) if line else {"card_gb": card, "error": (out + err)[-2000:]})
            print(json.dumps(results[-1])[:400], flush=True)
    print(f"\n{'card':>6}{'model':>7}{'batch':>7}{'size':>6}{'pred GB':>9}{'meas GB':>9}{'err %':>7}{'use %':>7}  result")
    for r in results:
        if "error" in r:
            print(f"{r['card_gb']:>6g}  ERROR {r['error'][-300:]}")
            continue
        err = (r["predicted_peak_gb"] - r["measured_peak_gb"]) / r["measured_peak_gb"] * 100
        use = r["measured_peak_gb"] / r["card_gb"] * 100
        r["error_pct"], r["use_pct"] = err, use
        status = "ok" if r["finished"] and not r["oom_recoveries"] else f"OOM x{r['oom_recoveries']} {r['failure'] or ''}"
        print(f"{r['card_gb']:>6g}{r['variant']:>7}{r['batch']:>7}{r['image_size']:>6}{r['predicted_peak_gb']:>9.2f}"
              f"{r['measured_peak_gb']:>9.2f}{err:>7.1f}{use:>7.0f}  {status}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "fit", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                          "compile": args.compile, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
