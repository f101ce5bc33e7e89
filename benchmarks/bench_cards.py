"""Every card against the reference row: the tutorial's settings for a card against the app's plan for it.

For each card size (4-80 GB, simulated on big GPUs as ``bench_fit.py`` does: benchmarks/simulated_card.py)
two runs, each in a fresh process with a GPU to itself:

* reference: benchmarks/reference_recipe.py (the common tutorial training, fp16, eager) with the tier
  table's row for that card (core/planning/tiers.py: 4 GB b0 . 2 . 224 accumulating 4, 6-8 GB b2 . 4 . 256,
  12 GB b4 . 8 . 288, 16 GB and up b5 . 32 . 288, an out-of-memory on 16 GB, recorded as such);
* ours: ``recommend`` for that card, the settings a user of it gets (bf16 where the GPU has it, the CUDA
  graph where the plan allows), through the real TrainingSession, with compile off by default: its
  one-minute warm-up per case doubles the command's time, so those figures are without compile's extra
  1.3-1.4x. ``--compile on`` measures what a long run (the tiers' 100 epochs of a UW-Madison-sized set)
  really gets, the warm-up excluded from the timing like every warm-up step (write it to another
  ``--out``: results of the two modes do not mix).

Both read the same PNG files through their real loaders with the same number of loader workers, and
time the same number of steps after the same warm-up. Recorded per card: images/s, the training time of
an epoch of ``--epoch-slices`` slices (slices / images per second, validation not included), peaks,
out-of-memory, and ``speedup`` = ours / reference (null when the reference does not fit). For ours
also the three peaks that must agree: recommend's prediction, the session's RunStarted prediction, and
the allocator's real peak (max reserved + the CUDA context), with the gap flagged.

Cases spread over the GPUs given (``--gpus 0,1``: one worker queue per GPU); results are written after
every case, so a run cut short by ``--budget-s`` or a per-case timeout keeps what it measured.

    python benchmarks/bench_cards.py --gpus 0,1          # the whole grid, about 8 minutes on 2 x H200
    python benchmarks/bench_cards.py --dry-run           # CPU: the orchestration with a fake worker
    python benchmarks/bench_cards.py --table             # markdown tables from the results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

from simulated_card import (  # noqa: E402
    GIB, cap_process, plan_for_card, plan_summary, pretend_free_memory, process_used_gib, real_gpu_template,
    repeating_datamodule_factory, step_probe)

CARDS = (4, 6, 8, 12, 16, 24, 48, 80)
SIDES = ("reference", "ours")
EPOCH_SLICES = 38_000  # a UW-Madison-sized training set (~38,500 slices)
RESULTS = ROOT / "benchmarks" / "results"
COMPILE_WORDS = {"off": "compile OFF (to bound the time; compile adds 1.3-1.4x inside the graph)",
                 "on": "compile ON (a long run's default; its warm-up is not timed)"}
NOTE = ("Simulated cards: one big GPU per process, its allocator capped at the card minus the CUDA context. "
        "Reference: the tier table's row for the card through reference_recipe.py (fp16, eager). Ours: recommend() "
        "for the card with {compile}, CUDA graph and "
        "precision as the plan says. Same PNG data, same loader workers, same warm-up and timed steps. Epoch time = "
        "epoch_slices / images per second (training only, no validation). measured_peak_gb = max_memory_reserved "
        "+ the calibrated CUDA context.")


# The memory model is calibrated on the app's fast path; the reference trains transformers' own modules,
# which reserved 12.26 GiB where the fast path reserved 8.44 (b5 . 16 . 288, graphed, one H200:
# benchmarks/results/bench_train_speed_b5_fastpath.json). Only the dry run's invented OOMs use it.
REFERENCE_MODULES_FACTOR = 12.26 / 8.44


def reference_row(card_gb: float) -> dict[str, Any]:
    """The tier table's settings for a card of this size: what the common tutorial tells its owner to run."""
    from medseg_gui.core.planning.tiers import tier_for_vram

    tier = tier_for_vram(card_gb)
    return {"tier": tier.name, "variant": tier.variant, "batch": tier.batch_size, "image_size": tier.image_size,
            "accumulate": tier.accumulate_grad_batches, "precision": "16-mixed"}


def row_text(row: dict[str, Any]) -> str:
    acc = f" x{row['accumulate']}" if row.get("accumulate", 1) > 1 else ""
    return f"{row['variant']} . {row['batch']}{acc} . {row['image_size']}"


def base_config(compile_mode: str = "off") -> Any:
    from medseg_gui.core.config import RunConfig

    base = RunConfig()
    base.training.compile = compile_mode
    return base


# ------------------------------------------------------------------------------------------------
# worker side: one card, one side, prints one RESULT line
# ------------------------------------------------------------------------------------------------
def _is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return "OutOfMemoryError" in text or "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text


def _peaks(context: dict[str, float | None]) -> dict[str, Any]:
    import torch

    reserved = torch.cuda.max_memory_reserved() / GIB
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB, "peak_reserved_gib": reserved,
            "measured_peak_gb": reserved + (context["context_model_gib"] or 0.0),
            "nvml_process_used_gib_at_end": process_used_gib(), **context,
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}


def reference_worker(card: float, data: Path, steps: int, warm: int, workers: int) -> dict[str, Any]:
    import torch

    from bench_train_speed import run_reference

    row = reference_row(card)
    context = cap_process(card)
    out: dict[str, Any] = dict(row)
    try:
        out.update(run_reference(data / f"demo{row['image_size']}", row["variant"], row["batch"], row["image_size"],
                                 warm + steps, workers, warm, accumulate=row["accumulate"]))
        out["oom"] = False
    except Exception as exc:  # noqa: BLE001 — an OOM is a result; anything else is reported as an error
        if not _is_oom(exc):
            raise
        out.update(oom=True, error=f"out of memory: {str(exc).splitlines()[0][:300]}")
    out.update(_peaks(context))
    torch.cuda.empty_cache()
    return out


def ours_worker(card: float, data: Path, steps: int, warm: int, workers: int,
                compile_mode: str = "off") -> dict[str, Any]:
    import torch

    from bench_train_speed import _timer_callback
    from medseg_gui.core.engine.session import TrainingSession

    context = cap_process(card)
    pretend_free_memory(card)
    rec = plan_for_card(card, torch.cuda.get_device_capability(0), base_config(compile_mode))
    out: dict[str, Any] = plan_summary(rec)
    cfg = rec.config
    tr = cfg.training
    tr.output_dir = tempfile.mkdtemp(prefix="cards_runs_")
    cfg.dataset.path = str(data / f"demo{cfg.dataset.image_size}")
    tr.pretrained, tr.epochs, tr.max_steps_per_epoch, tr.num_workers = "scratch", 1, warm + steps, workers
    timer, probe = _timer_callback(warm, tr.batch_size), step_probe()
    events: list[Any] = []
    result = TrainingSession(cfg, events.append, datamodule_factory=repeating_datamodule_factory(warm + steps),
                             callbacks=[timer, probe]).run()
    started = next((e for e in events if type(e).__name__ == "RunStarted"), None)
    ooms = [e for e in events if type(e).__name__ == "OomRecovered"]
    out.update(runstarted_predicted_peak_gb=getattr(started, "predicted_peak_gb", None),
               oom=bool(ooms) or getattr(result, "kind", "") == "oom", oom_recoveries=len(ooms),
               finished=type(result).__name__ == "RunFinished", **probe.seen,
               graph_log=[e.message for e in events if type(e).__name__ == "LogMessage" and "graph" in e.message.lower()],
               warnings=[e.message for e in events if type(e).__name__ == "LogMessage" and e.level == "warning"])
    if type(result).__name__ == "RunFailed":
        out["error"] = f"{result.reason} {result.hint}".strip()
    if ooms:  # the batch was halved mid-run: images/s at the planned batch would be wrong
        out["note"] = f"batch halved after an out-of-memory: {ooms[-1].message}"
    elif timer.t_end is not None and timer.t_warm is not None:
        out.update(timer.result())
    out.update(_peaks(context))
    shutil.rmtree(tr.output_dir, ignore_errors=True)  # our own temp folder: a b5 run leaves ~2 GB of checkpoints
    return out


def fake_worker(side: str, card: float, steps: int, warm: int, workers: int, sleep_s: float) -> dict[str, Any]:
    """The CPU dry run's stand-in: the real plans and reference rows, invented speeds and peaks
    (``fake``: true), an OOM where the memory model says the reference row does not fit the card."""
    from medseg_gui.core.planning.memory import MemoryQuery, default_memory_model

    time.sleep(sleep_s)
    if side == "reference":
        out: dict[str, Any] = reference_row(card)
        need = default_memory_model()(MemoryQuery(out["variant"], out["batch"], out["image_size"], 4, "16-mixed"))
        out["oom"] = need * REFERENCE_MODULES_FACTOR > card
    else:
        rec = plan_for_card(card, (8, 6), base_config())
        out = plan_summary(rec)
        out.update(runstarted_predicted_peak_gb=rec.predicted_peak_gb, oom=False, oom_recoveries=0, finished=True,
                   graph_captured=out["graph_planned"])
    if not out["oom"]:
        out.update(steps_timed=steps, warmup_s=1.0, images_per_s=(100.0 if side == "reference" else 250.0) * card ** 0.5)
    predicted = out.get("predicted_peak_gb") or card * 0.5
    out.update(fake=True, num_workers=workers, measured_peak_gb=card if out["oom"] else 0.9 * predicted,
               peak_reserved_gib=None, peak_allocated_gib=None, gpu="fake")
    return out


def worker_main(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    if args.fake:
        res = fake_worker(args.worker, args.card, args.steps, args.warm, args.workers, args.fake_sleep)
    elif args.worker == "reference":
        res = reference_worker(args.card, Path(args.data), args.steps, args.warm, args.workers)
    else:
        res = ours_worker(args.card, Path(args.data), args.steps, args.warm, args.workers, args.compile)
    res.update(card_gb=args.card, side=args.worker, total_s=time.perf_counter() - t,
               fast_path_env=os.environ.get("MEDSEG_FAST_PATH", "default"))
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------
def run_case(card: float, side: str, gpu: str, timeout: float, args: argparse.Namespace) -> dict[str, Any]:
    """One case in a fresh process on one GPU; its whole process group is killed on timeout
    (the loader's worker processes too)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--card", f"{card:g}", "--data", args.data,
           "--steps", str(args.steps), "--warm", str(args.warm), "--workers", str(args.workers),
           "--compile", args.compile]
    if args.dry_run:
        cmd += ["--fake", "--fake-sleep", str(args.fake_sleep)]
    home = tempfile.mkdtemp(prefix="cards_home_")  # the app's home for this case alone, removed after it
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               CUDA_VISIBLE_DEVICES=gpu, MEDSEG_HOME=home)
    if side == "reference":  # the tutorial's model is transformers' own modules (core/engine/fast_segformer.py)
        env["MEDSEG_FAST_PATH"] = "off"
    else:  # ours: the app's defaults, whatever the shell that started the benchmark says
        env.pop("MEDSEG_FAST_PATH", None)
    try:
        return _run_process(cmd, env, card, side, gpu, timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_process(cmd: list[str], env: dict[str, str], card: float, side: str, gpu: str,
                 timeout: float) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"card_gb": card, "side": side, "gpu_index": gpu, "error": f"timed out after {timeout:.0f} s",
                "total_s": time.perf_counter() - t}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "gpu_index": gpu}
    return {"card_gb": card, "side": side, "gpu_index": gpu, "error": (out + err)[-3000:],
            "total_s": time.perf_counter() - t}


def peak_check(card: float, ours: dict[str, Any]) -> dict[str, Any] | None:
    """recommend's predicted peak, the run's, and the real one; flags where they part.

    "One predicted peak per plan": the plan's and RunStarted's numbers must be the same. "Batches sized
    to what is really used": the real peak should sit under the prediction, and the card should not be
    left idle by much more than the plan's safety margin."""
    from medseg_gui.core.planning.memory import safety_margin

    plan, run, real = (ours.get("predicted_peak_gb"), ours.get("runstarted_predicted_peak_gb"),
                       ours.get("measured_peak_gb"))
    if real is None or "error" in ours and not ours.get("oom"):
        return None
    flags = []
    if plan is None or run is None or abs(plan - run) > 0.01:
        flags.append(f"plan and run predict different peaks ({_num(plan)} vs {_num(run)} GB)")
    if run is not None and real > run + 0.005:  # above the prediction by what shows at 0.01 GB
        flags.append(f"real peak {real - run:.2f} GB above the run's prediction")
    unused = card - real
    if unused > safety_margin(card) + 0.5:
        flags.append(f"{unused:.1f} GB of the card unused at the peak (margin {safety_margin(card):.2f} GB)")
    if ours.get("oom"):
        flags.append("out of memory")
    return {"plan_predicted_gb": plan, "run_predicted_gb": run, "real_peak_gb": real,
            "gap_gb": None if run is None else run - real,
            "error_pct": None if run is None else (run - real) / real * 100, "unused_gb": unused,
            "one_predicted_peak": plan is not None and run is not None and abs(plan - run) <= 0.01, "flags": flags}


def _graph_words(ours: dict[str, Any]) -> str:
    """'graph' / 'no graph' as the run went (the plan's word where the run did not say), and a
    mismatch spelled out: a plan that promised the graph and a run without it must stand out;
    '+ compile' where the run compiled."""
    planned, ran = ours.get("graph_planned"), ours.get("graph_captured")
    if ran is None:
        return "graph planned" if planned else "no graph planned"
    compiled = " + compile" if ours.get("compiled") else ""
    if planned and not ran:
        return "graph planned but NOT captured" + compiled
    return ("graph" if ran else "no graph") + compiled


def _num(x: float | None) -> str:
    return "none" if x is None else f"{x:.2f}"


def epoch_seconds(images_per_s: float | None, slices: int) -> float | None:
    return slices / images_per_s if images_per_s else None


def assemble(cards: list[float], raw: list[dict[str, Any]], epoch_slices: int) -> list[dict[str, Any]]:
    """One entry per card: both sides, speedup (null when the reference does not fit), the peak check."""
    by = {(r["card_gb"], r["side"]): r for r in raw}
    entries = []
    for card in cards:
        ref, ours = by.get((card, "reference")), by.get((card, "ours"))
        entry: dict[str, Any] = {"card_gb": card, "reference_row": row_text(reference_row(card)),
                                 "reference": ref, "ours": ours, "speedup": None}
        ref_ips = ref.get("images_per_s") if ref else None
        ours_ips = ours.get("images_per_s") if ours else None
        entry["epoch_s_reference"] = epoch_seconds(ref_ips, epoch_slices)
        entry["epoch_s_ours"] = epoch_seconds(ours_ips, epoch_slices)
        if ref and ref.get("oom"):
            entry["oom"] = True
            entry["speedup_note"] = "the reference row runs out of memory on this card"
        elif ref_ips and ours_ips:
            entry["speedup"] = ours_ips / ref_ips
        if ours is not None:
            entry["ours_settings"] = (f"{row_text(ours)} {ours.get('precision', '?')}, {_graph_words(ours)}"
                                      if "variant" in ours else None)
            entry["peak_check"] = peak_check(card, ours)
        entries.append(entry)
    return entries


def save(path: Path, cards: list[float], raw: list[dict[str, Any]], args: argparse.Namespace,
         gpu_name: str) -> Path:
    this_run = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(), "gpu": gpu_name,
                "gpus": args.gpus, "cards": cards, "steps_timed": args.steps, "warm_steps": args.warm,
                "workers": args.workers, "budget_s": args.budget_s}
    every_card = sorted(set(cards) | {r["card_gb"] for r in raw})  # with --append, earlier commands' cards too
    note = NOTE.format(compile=COMPILE_WORDS[args.compile])
    doc = {"benchmark": "cards", **this_run, "dry_run": bool(args.dry_run), "note": note, "compile": args.compile,
           "epoch_slices": args.epoch_slices, "runs": [*args.previous_runs, this_run],
           "results": assemble(every_card, raw, args.epoch_slices), "raw": raw}
    return write_results(path, doc)


def run_all(cards: list[float], args: argparse.Namespace, gpu_name: str) -> list[dict[str, Any]]:
    """Cases in a shared queue, largest cards first (they take longest), one thread per GPU."""
    todo: queue.Queue = queue.Queue()
    for card in sorted(cards, reverse=True):
        for side in SIDES:
            todo.put((card, side))
    raw: list[dict[str, Any]] = list(args.previous_raw)
    lock = threading.Lock()
    t0 = args.started  # the budget counts from the command's start, data generation included

    def gpu_loop(gpu: str) -> None:
        while True:
            try:
                card, side = todo.get_nowait()
            except queue.Empty:
                return
            left = args.budget_s - (time.perf_counter() - t0)
            if left < args.min_case_s:
                res = {"card_gb": card, "side": side, "skipped": f"time budget ({args.budget_s:.0f} s) spent",
                       "error": "skipped: time budget spent"}
            else:
                print(f"[{time.perf_counter() - t0:6.0f}s] gpu {gpu}: {card:g} GB {side} ...", flush=True)
                res = run_case(card, side, gpu, min(args.case_timeout, left), args)
            with lock:
                raw.append(res)
                short = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()
                         if k in ("card_gb", "side", "variant", "batch", "accumulate", "image_size", "cuda_graphs",
                                  "images_per_s", "oom", "measured_peak_gb", "predicted_peak_gb",
                                  "runstarted_predicted_peak_gb", "total_s")}
                print(f"[{time.perf_counter() - t0:6.0f}s] gpu {gpu}: " + json.dumps(short)
                      + (f"\n    ERROR {str(res['error'])[-600:]}" if "error" in res else ""), flush=True)
                save(Path(args.out), cards, raw, args, gpu_name)

    threads = [threading.Thread(target=gpu_loop, args=(g,)) for g in args.gpus.split(",")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return raw


# ------------------------------------------------------------------------------------------------
# tables (docs/speed_and_fit.md)
# ------------------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ".0f", none: str = "-") -> str:
    return none if x is None else format(x, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def cards_table(doc: dict[str, Any]) -> str:
    """Markdown: per card, the reference row against our plan, speed and epoch time; then the peaks."""
    slices = doc.get("epoch_slices", EPOCH_SLICES)
    if doc.get("raw"):  # the measurements are the raw cases; the per-card view is re-derived by today's rules
        doc = dict(doc, results=assemble(sorted({r["card_gb"] for r in doc["raw"]}), doc["raw"], slices))
    lines = ["| Card | Reference row | Reference img/s | Reference epoch | Ours | Ours img/s | Ours epoch | Speedup |",
             "|---:|---|---:|---:|---|---:|---:|---:|"]
    for e in doc["results"]:
        ref, ours = e.get("reference") or {}, e.get("ours") or {}
        ref_cell = "out of memory" if e.get("oom") else _fmt(ref.get("images_per_s")) if "error" not in ref else "failed"
        ours_cell = _fmt(ours.get("images_per_s")) if "error" not in ours else "failed"
        speed = f"{e['speedup']:.2f}x" if e.get("speedup") else ("n/a (reference OOM)" if e.get("oom") else "-")
        lines.append(f"| {e['card_gb']:g} GB | {e['reference_row']} | {ref_cell} | {_duration(e.get('epoch_s_reference'))} "
                     f"| {e.get('ours_settings') or '-'} | {ours_cell} | {_duration(e.get('epoch_s_ours'))} | {speed} |")
    lines += ["", f"Epoch = {slices:,} training slices / images per second (validation not included).", "",
              "| Card | Ours | Plan predicts GB | Run predicts GB | Real peak GB | Gap GB | Unused GB | Flags |",
              "|---:|---|---:|---:|---:|---:|---:|---|"]
    for e in doc["results"]:
        pc = e.get("peak_check")
        if not pc:
            continue
        lines.append(f"| {e['card_gb']:g} GB | {e.get('ours_settings') or '-'} | {_fmt(pc['plan_predicted_gb'], '.2f')} "
                     f"| {_fmt(pc['run_predicted_gb'], '.2f')} | {_fmt(pc['real_peak_gb'], '.2f')} "
                     f"| {_fmt(pc['gap_gb'], '+.2f')} | {_fmt(pc['unused_gb'], '.1f')} | {'; '.join(pc['flags']) or 'ok'} |")
    return "\n".join(lines)


def fit_table(doc: dict[str, Any]) -> str:
    """Markdown: the fit proof (bench_fit.py), one row per simulated card."""
    lines = ["| Card | Model . batch . size | Precision | CUDA graph | Predicted GB | Measured GB | Error % | Card used % | Result |",
             "|---:|---|---|---|---:|---:|---:|---:|---|"]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['card_gb']:g} GB | - | - | - | - | - | - | - | failed: {str(r['error'])[-80:].strip()} |")
            continue
        acc = f" x{r['accumulate']}" if r.get("accumulate", 1) > 1 else ""
        status = "ok" if r["finished"] and not r["oom_recoveries"] else f"OOM x{r['oom_recoveries']}"
        err = (r["predicted_peak_gb"] - r["measured_peak_gb"]) / r["measured_peak_gb"] * 100
        lines.append(f"| {r['card_gb']:g} GB | {r['variant']} . {r['batch']}{acc} . {r['image_size']} | {r['precision']} "
                     f"| {_graph_words(r)} | {r['predicted_peak_gb']:.2f} | {r['measured_peak_gb']:.2f} "
                     f"| {err:+.1f} | {r['measured_peak_gb'] / r['card_gb'] * 100:.0f} | {status} |")
    return "\n".join(lines)


def render_tables(cards_path: Path, fit_path: Path) -> str:
    parts = []
    for title, path, render in (("Every card against the reference row", cards_path, cards_table),
                                ("Fit proof, graphed defaults", fit_path, fit_table)):
        parts.append(f"### {title}\n")
        if not path.exists():
            parts.append(f"(no results yet: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is missing)\n")
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        parts.append(f"Measured {doc.get('time', '?')} on {doc.get('gpu') or _first_gpu(doc)}"
                     + (" (DRY RUN: invented numbers)" if doc.get("dry_run") else "") + ".\n")
        parts.append(render(doc) + "\n")
    return "\n".join(parts)


def _first_gpu(doc: dict[str, Any]) -> str:
    return next((r.get("gpu") for r in doc.get("results", []) if r.get("gpu")), "?")


BEGIN, END = "<!-- BEGIN GENERATED TABLES (benchmarks/bench_cards.py --table --doc) -->", "<!-- END GENERATED TABLES -->"


def write_doc(doc_path: Path, tables: str) -> None:
    """Replace the text between the markers in the doc; nothing else in it is touched."""
    from medseg_gui.core.atomic import atomic_write_text

    if not doc_path.is_file():
        raise SystemExit(f"{doc_path}: no such file; --doc names an existing markdown file with the "
                         "generated-table markers")
    text = doc_path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc_path}: the generated-table markers are missing; add the lines\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(doc_path, f"{head}{BEGIN}\n{tables}\n{END}{tail}")


# ------------------------------------------------------------------------------------------------
def earlier_results(path: Path, cards: list[float], args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """(raw results, run records) to keep from an existing results file: with --append those of other
    cards; with --force none. Without either, an existing file is refused: measured GPU minutes are
    not overwritten by accident, and a file this benchmark did not write is never replaced."""
    if not path.exists():
        return [], []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ours = isinstance(doc, dict) and doc.get("benchmark") == "cards"
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise SystemExit(f"{path} exists and is not a results file of this benchmark: choose another --out")
    old_dry = bool(doc.get("dry_run"))
    if args.force or (old_dry and args.dry_run and not args.append):  # invented numbers: nothing to lose
        return [], []
    if not args.append:
        raise SystemExit(f"{path} already holds results: add --append to add these cards to them, "
                         "--force to replace them, or choose another --out")
    if doc.get("compile", "off") != args.compile:
        raise SystemExit(f"{path} holds results with compile {doc.get('compile', 'off')}, which do not mix with "
                         f"this run's (compile {args.compile}): choose another --out")
    if old_dry != bool(args.dry_run):
        raise SystemExit(f"{path} holds {'dry-run' if old_dry else 'measured'} results, which do not mix with "
                         "this run's: choose another --out")
    keep = [r for r in doc.get("raw", []) if r.get("card_gb") not in cards]
    return keep, list(doc.get("runs", []))


def parse_cards(text: str) -> list[float]:
    try:
        cards = [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--cards {text!r}: give card sizes in GB separated by commas, e.g. 4,8,16") from None
    if not cards or any(c < 2 for c in cards):
        raise SystemExit(f"--cards {text!r}: every card must be at least 2 GB (the CUDA context alone is ~1.4 GB)")
    return cards


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--card", type=float, help=argparse.SUPPRESS)
    p.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fake-sleep", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--cards", default=",".join(map(str, CARDS)), help="card sizes in GB (default %(default)s)")
    p.add_argument("--gpus", default="0", help="CUDA devices to spread the cases over, e.g. 0,1")
    p.add_argument("--steps", type=int, default=50, help="timed steps after the warm-up (both sides)")
    p.add_argument("--warm", type=int, default=15, help="warm-up steps, not timed (both sides)")
    p.add_argument("--workers", type=int, default=None, help="loader workers for both sides (default: as recommend "
                                                              "plans them for this machine)")
    p.add_argument("--epoch-slices", type=int, default=EPOCH_SLICES, help="dataset size for the epoch times")
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "medseg_bench_data"))
    p.add_argument("--budget-s", type=float, default=480, help="the whole command's time limit in seconds: no case "
                                                               "starts, or runs on, past it")
    p.add_argument("--case-timeout", type=float, default=150, help="seconds before one case is killed")
    p.add_argument("--min-case-s", type=float, default=25, help=argparse.SUPPRESS)
    p.add_argument("--compile", choices=("off", "on"), default="off", help="our side's compile setting (default "
                   "%(default)s; 'on' is what a long run gets, each case then takes about a minute longer)")
    p.add_argument("--dry-run", action="store_true", help="CPU: fake workers (real plans, invented speeds)")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/bench_cards.json; "
                                               "a dry run writes to the temp folder)")
    p.add_argument("--append", action="store_true", help="keep the results already in --out for the cards this "
                                                          "command does not run (one GPU: the grid in two commands)")
    p.add_argument("--force", action="store_true", help="replace an earlier results file of this benchmark")
    p.add_argument("--table", action="store_true", help="print the markdown tables from the results and exit")
    p.add_argument("--fit", default=str(RESULTS / "bench_fit_graphed.json"), help="fit-proof results for --table")
    p.add_argument("--doc", default=None, help="with --table: also write the tables into this markdown file "
                                                "between its generated-table markers")
    args = p.parse_args(argv)
    args.started = time.perf_counter()
    if args.worker:
        worker_main(args)
        return
    if args.out is None:
        args.out = str(Path(tempfile.gettempdir()) / "bench_cards_dry_run.json" if args.dry_run
                       else RESULTS / "bench_cards.json")
    if args.table:
        tables = render_tables(Path(args.out), Path(args.fit))
        print(tables)
        if args.doc:
            write_doc(Path(args.doc), tables)
            print(f"wrote the tables into {args.doc}")
        return
    if args.steps < 1 or args.warm < 1:
        raise SystemExit("--steps and --warm must be at least 1 (the timer starts after the warm-up)")
    cards = parse_cards(args.cards)
    args.previous_raw, args.previous_runs = earlier_results(Path(args.out), cards, args)
    name, capability = real_gpu_template()
    if capability is None and not args.dry_run:
        raise SystemExit("No GPU visible: run this on a GPU machine, or use --dry-run for the CPU check")
    plans = {c: plan_for_card(c, capability or (8, 6), base_config(args.compile)) for c in cards}
    if args.workers is None:
        args.workers = max(p.config.training.num_workers for p in plans.values())
    if not args.dry_run:
        from bench_train_speed import ensure_data

        sizes = {reference_row(c)["image_size"] for c in cards} | {p.config.dataset.image_size for p in plans.values()}
        ensure_data(Path(args.data), sizes, 240)
    print(f"{len(cards)} cards x {len(SIDES)} sides on GPU(s) {args.gpus} ({name}); {args.warm} warm-up + "
          f"{args.steps} timed steps; {args.workers} loader workers; budget {args.budget_s:.0f} s", flush=True)
    for c in cards:
        print(f"  {c:g} GB: reference {row_text(reference_row(c))}, ours {row_text(plan_summary(plans[c]))} "
              f"{plans[c].config.training.precision} graphs {plans[c].config.training.cuda_graphs}", flush=True)
    raw = run_all(cards, args, name)
    out = save(Path(args.out), cards, raw, args, name)
    print()
    print(render_tables(out, Path(args.fit)).split("### Fit proof")[0])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
