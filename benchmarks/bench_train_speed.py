"""Training throughput: the reference recipe (the common tutorial training) against our engine, end to end, on one GPU, in one run.

Both sides go through the real Lightning Trainer and a real DataLoader reading PNG files (the demo
generator's, at the case's image size) with the full augmentation set; the training set is the
same files repeated so a run is long enough to measure. Each case runs in a fresh process (a
second compile in one process recompiles with dynamic shapes; separate processes also keep the
peak-memory counters honest).

    python benchmarks/bench_train_speed.py                    # all cases, writes results JSON
    python benchmarks/bench_train_speed.py --cases b0-2-224 --impls reference,ours-compiled

impls: ``reference`` (reference_recipe.py: fp16-mixed + GradScaler, eager, CPU normalisation, float32 batches);
our engine with ``compile``/``cuda_graphs`` set to: ``ours-eager`` (off/off), ``ours-graphs``
(off/on: the whole step as one CUDA graph, no compiler), ``ours-compiled`` (on/on: the default
settings of long runs), ``ours-compiled-warm`` (the same again: the compile cache is warm) and ``ours-compiled-ro``
(on/off: inductor's own "reduce-overhead" graphs of forward and backward, the previous engine).
Suffixes on any of ours, in any order: ``-nocl`` channels_last off; ``-hf`` transformers' own SegFormer
modules instead of the fast path (core/engine/fast_segformer.py: decode head without the concat,
fused attention); ``-regional`` compile each repeated block, the head and the loss on their own
(core/planning/speed.py; the app's default since it measured faster); without it, or with ``-whole``,
one whole graph; ``-mmup`` the decode head's upsampling gradient as two matrix products while compiled
(core/engine/bilinear.py; off in the app until measured). Each impl sets both choices explicitly in its worker's environment, so a change of the
app's defaults never changes what a name measures.

    # per tier: reference vs ours (graphs, compiled cold, compiled warm: the app's defaults), fast path off
    python benchmarks/bench_train_speed.py --cases b0-2-224,b2-4-256,b4-8-288,b5-16-288 --cold-cache \
        --impls reference,ours-graphs,ours-graphs-hf,ours-compiled-regional,ours-compiled-warm-regional \
        --steps 60 --warm 20 --case-timeout 200 --budget-s 540
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

TIER_CASES = ["b0-2-224", "b2-4-256", "b4-8-288", "b5-16-288"]
BATCH32_CASES = ["b0-32-288", "b2-32-288", "b4-32-288", "b5-32-288"]
IMPLS = ["reference", "ours-eager", "ours-graphs", "ours-compiled", "ours-compiled-warm", "ours-compiled-ro"]
# impl → (training.compile, training.cuda_graphs)
OUR_SETTINGS = {"ours-eager": ("off", "off"), "ours-graphs": ("off", "on"), "ours-compiled": ("on", "on"),
                "ours-compiled-warm": ("on", "on"), "ours-compiled-ro": ("on", "off")}


SUFFIXES = ("-nocl", "-hf", "-regional", "-whole", "-mmup")


def split_impl(impl: str) -> tuple[str, tuple[str, ...]]:
    """('ours-compiled-warm', ('-regional',)) for 'ours-compiled-warm-regional': base name and suffixes."""
    found: list[str] = []
    while True:
        suffix = next((x for x in SUFFIXES if impl.endswith(x)), None)
        if suffix is None:
            return impl, tuple(sorted(found))
        found.append(suffix)
        impl = impl.removesuffix(suffix)


def impl_settings(impl: str) -> tuple[str, str, bool]:
    """(compile, cuda_graphs, channels_last) for one of our impl names."""
    base, suffixes = split_impl(impl)
    compile_mode, graphs = OUR_SETTINGS[base]
    return compile_mode, graphs, "-nocl" not in suffixes


def impl_env(impl: str) -> dict[str, str]:
    """Environment of the worker process: the fast path and the compile scope, always explicit so a change
    of the defaults does not silently change what an impl name measures."""
    _, suffixes = split_impl(impl)
    return {"MEDSEG_FAST_PATH": "off" if "-hf" in suffixes else "on",
            "MEDSEG_COMPILE_SCOPE": "regional" if "-regional" in suffixes else "whole",
            "MEDSEG_UPSAMPLE_GRAD": "matmul" if "-mmup" in suffixes else "pytorch"}


def parse_case(case: str) -> tuple[str, int, int]:
    variant, batch, size = case.split("-")
    return variant, int(batch), int(size)


# ------------------------------------------------------------------------------------------------
# worker side: one case, one implementation, prints one JSON line
# ------------------------------------------------------------------------------------------------
def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timer_callback(warm_steps: int, batch: int):
    import lightning as L

    class StepTimer(L.Callback):
        """Host time at batch ends; syncs the GPU only at the warm mark and at the end."""

        def __init__(self):
            self.t0 = None
            self.t_warm = None
            self.n = 0
            self.t_end = None
            self.warm_steps = warm_steps

        def on_train_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, b, batch_idx):
            self.n += 1
            if self.n == self.warm_steps:
                _sync()
                self.t_warm = time.perf_counter()
            if batch_idx + 1 == trainer.num_training_batches:  # before validation starts
                _sync()
                self.t_end = time.perf_counter()

        def result(self):
            steps = self.n - self.warm_steps
            return {"steps_timed": steps, "warmup_s": self.t_warm - self.t0,
                    "images_per_s": steps * batch / (self.t_end - self.t_warm)}

    return StepTimer()


def _nvml_peak_sampler():
    """Samples the card's used memory (as nvidia-smi shows it) every 50 ms in a thread."""
    import threading

    from medseg_gui.core.hardware import probe

    state = {"peak": 0.0, "stop": False}

    def loop():
        while not state["stop"]:
            snap = probe()
            if snap.gpus and snap.gpus[0].used_gb is not None:
                state["peak"] = max(state["peak"], snap.gpus[0].used_gb)
            time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return state


def run_reference(data: Path, variant: str, batch: int, size: int, steps: int, workers: int, warm: int,
                  accumulate: int = 1) -> dict:
    import lightning as L
    import torch

    from reference_recipe import TutorialModule, tutorial_loader
    from medseg_gui.core.data.formats import resolve_dataset_path
    from medseg_gui.core.engine.model import build_model
    from medseg_gui.core.config import RunConfig

    cfg = RunConfig()
    cfg.training.variant, cfg.training.pretrained = variant, "scratch"
    model = build_model(cfg)
    root = resolve_dataset_path(str(data), size)
    images = sorted((root / "train" / "images").glob("*.png"))
    pairs = [(str(p), str(root / "train" / "masks" / p.name)) for p in images]
    repeat = max(1, -(-(steps * batch) // len(pairs)))
    loader = tutorial_loader(pairs * repeat, size, batch, workers, is_train=True)
    timer = _timer_callback(warm, batch)
    gpu = torch.cuda.is_available()
    trainer = L.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision="16-mixed" if gpu else "32", max_epochs=1, limit_train_batches=steps,
                        accumulate_grad_batches=accumulate,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(TutorialModule(model, 4), train_dataloaders=loader)
    return timer.result()


def run_ours(data: Path, variant: str, batch: int, size: int, steps: int, workers: int, warm: int,
             impl: str) -> dict:
    from medseg_gui.core.config import RunConfig
    from medseg_gui.core.engine.session import TrainingSession

    cfg = RunConfig()
    cfg.dataset.path, cfg.dataset.image_size = str(data), size
    tr = cfg.training
    tr.variant, tr.batch_size, tr.pretrained, tr.epochs = variant, batch, "scratch", 1
    tr.max_steps_per_epoch, tr.num_workers = steps, workers
    tr.compile, tr.cuda_graphs, tr.channels_last = impl_settings(impl)
    tr.output_dir = tempfile.mkdtemp(prefix="bench_runs_")

    from simulated_card import repeating_datamodule_factory

    datamodule_factory = repeating_datamodule_factory(steps)  # the demo files repeated to enough batches

    timer = _timer_callback(warm, batch)
    events = []
    session = TrainingSession(cfg, events.append, datamodule_factory=datamodule_factory, callbacks=[timer])
    result = session.run()
    if type(result).__name__ == "RunFailed":
        raise RuntimeError(f"{result.reason}\n{result.detail}")
    out = timer.result()
    phases = [e for e in events if type(e).__name__ == "PhaseChanged"]
    out["phases"] = [(p.phase, round(p.time - events[0].time, 1), p.message) for p in phases]
    out["warnings"] = [e.message for e in events if type(e).__name__ == "LogMessage" and e.level == "warning"]
    out["settings"] = dict(zip(("compile", "cuda_graphs", "channels_last"), impl_settings(impl)),
                           fast_path=os.environ.get("MEDSEG_FAST_PATH", "on"),
                           compile_scope=os.environ.get("MEDSEG_COMPILE_SCOPE", "whole"))
    return out


def worker(args: argparse.Namespace) -> None:
    import torch

    variant, batch, size = parse_case(args.case)
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    nvml = _nvml_peak_sampler()
    t = time.perf_counter()
    if args.impl == "reference":
        res = run_reference(Path(args.data), variant, batch, size, args.steps, args.workers, args.warm)
    else:
        res = run_ours(Path(args.data), variant, batch, size, args.steps, args.workers, args.warm, args.impl)
    nvml["stop"] = True
    res.update(case=args.case, impl=args.impl, variant=variant, batch=batch, image_size=size,
               total_s=time.perf_counter() - t,
               peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30 if gpu else None,
               peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if gpu else None,
               peak_nvml_used_gib=nvml["peak"], gpu=torch.cuda.get_device_name(0) if gpu else "cpu",
               torch=torch.__version__)
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------
def ensure_data(path: Path, sizes: set[int], n: int) -> None:
    from medseg_gui.core.data.demo import generate_demo

    for size in sorted(sizes):
        target = path / f"demo{size}"
        if not target.exists():
            t = time.perf_counter()
            generate_demo(target, n=n, size=size, seed=0)
            print(f"generated {n} demo slices at {size}px in {time.perf_counter() - t:.1f}s", flush=True)


def run_case(case: str, impl: str, args: argparse.Namespace) -> dict:
    _, _, size = parse_case(case)
    cmd = [sys.executable, __file__, "--worker", "--case", case, "--impl", impl,
           "--data", str(Path(args.data) / f"demo{size}"), "--steps", str(args.steps),
           "--workers", str(args.workers), "--warm", str(args.warm)]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1")
    # the reference recipe trains transformers' own modules, never our fast path
    env.update(impl_env(impl) if impl != "reference" else {"MEDSEG_FAST_PATH": "off"})
    base, suffixes = split_impl(impl)
    if base == "ours-compiled-ro" and args.cold_cache:
        env["MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg_cold_")
    elif base == "ours-compiled" and args.cold_cache:
        # a fresh, empty compile cache per case and variant; "ours-compiled-warm" with the same suffixes
        # then reuses it
        env["MEDSEG_HOME"] = tempfile.mkdtemp(prefix="medseg_cold_")
        args._homes[(case, suffixes)] = env["MEDSEG_HOME"]
    elif base == "ours-compiled-warm" and (case, suffixes) in args._homes:
        env["MEDSEG_HOME"] = args._homes[(case, suffixes)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "impl": impl, "error": f"timed out after {args.case_timeout} s",
                "total_s": time.perf_counter() - t}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stdout + proc.stderr)[-3000:]
    return {"case": case, "impl": impl, "error": tail, "total_s": time.perf_counter() - t}


def _ratio(by: dict, case: str, impl: str) -> float:
    base = by.get((case, "reference"), {}).get("images_per_s")
    ours = by.get((case, impl), {}).get("images_per_s")
    return ours / base if base and ours else float("nan")


def print_table(results: list[dict]) -> None:
    """img/s (warm-up s, peak reserved GiB) per impl, then speed-ups over the reference recipe."""
    by = {(r["case"], r["impl"]): r for r in results}
    cases = list(dict.fromkeys(r["case"] for r in results))
    impls = list(dict.fromkeys(r["impl"] for r in results))
    ratios = [i for i in impls if i != "reference"]
    print()
    print(f"{'case':<12}" + "".join(f"{i:>24}" for i in impls) + "".join(f"{'x ' + i[5:]:>16}" for i in ratios))
    for c in cases:
        row = f"{c:<12}"
        for i in impls:
            r = by.get((c, i), {})
            cell = ("ERR" if "error" in r else "%.0f (w %.0fs, %.1fG)" % (
                r.get("images_per_s", 0), r.get("warmup_s", 0), r.get("peak_reserved_gib") or 0)) if r else "-"
            row += f"{cell:>24}"
        row += "".join(f"{_ratio(by, c, i):>16.2f}" for i in ratios)
        print(row)


def save(results: list[dict], args: argparse.Namespace) -> Path:
    out = Path(args.out)
    doc = {"benchmark": "train_speed", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
           "steps": args.steps, "warm_steps": args.warm, "workers": args.workers, "results": results}
    return write_results(out, doc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--cases", default=",".join(TIER_CASES + BATCH32_CASES))
    p.add_argument("--impls", default="reference,ours-eager,ours-compiled")
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "medseg_bench_data"))
    p.add_argument("--n", type=int, default=240, help="demo slices to generate per image size")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--warm", type=int, default=30, help="steps excluded from the throughput")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--cold-cache", action="store_true", help="compile with an empty cache (first-run warm-up)")
    p.add_argument("--case-timeout", type=int, default=420)
    p.add_argument("--budget-s", type=float, default=0,
                   help="start no new case after this many seconds (0: no limit); skipped cases are recorded")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_train_speed.json"))
    args = p.parse_args()
    args._homes = {}
    if args.worker:
        worker(args)
        return
    cases = [c for c in args.cases.split(",") if c]
    impls = [i for i in args.impls.split(",") if i]
    ensure_data(Path(args.data), {parse_case(c)[2] for c in cases}, args.n)
    results = []
    start = time.perf_counter()
    for case in cases:
        for impl in impls:
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                results.append({"case": case, "impl": impl, "error": f"skipped: the {args.budget_s:g} s budget was spent"})
                print(f"{case} {impl} skipped (budget)", flush=True)
                save(results, args)
                continue
            r = run_case(case, impl, args)
            results.append(r)
            short = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "error"}
            print(json.dumps(short) if "error" not in r else f"{case} {impl} FAILED:\n{r['error']}", flush=True)
            save(results, args)  # after every case: a run cut short keeps what it measured
    print_table(results)
    print(f"\nwrote {save(results, args)}")


if __name__ == "__main__":
    main()
