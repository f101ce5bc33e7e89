"""Fit ``medseg_gui/core/planning/calibration/memory.json`` from measured peaks (see core/planning/memory.py).

Inputs: the eager grid of ``bench_memory.py`` and the compiled runs of ``bench_train_speed.py``
(``ours-compiled``); prints each variant's fit error so a bad calibration is seen before it ships.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medseg_gui.core.atomic import atomic_write_text  # noqa: E402
from medseg_gui.core.config import VARIANTS  # noqa: E402
from medseg_gui.core.planning.memory import CALIBRATION_FILE, fit_coeffs, precision_class  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--grid", nargs="+", default=[str(ROOT / "benchmarks/results/bench_memory.json")],
                   help="bench_memory.py results, one or more (e.g. the mixed-precision and the fp32 grid of "
                        "separate commands); GPU and torch are taken from the first")
    p.add_argument("--compiled", nargs="*", default=[str(ROOT / "benchmarks/results/bench_train_speed.json"),
                                                     str(ROOT / "benchmarks/results/bench_train_speed_reduce_overhead.json")],
                   help="bench_train_speed.json results: eager runs give the card-wide overhead, compiled "
                        "runs the compiled offset")
    p.add_argument("--extra", nargs="*", default=[str(ROOT / "benchmarks/results/bench_fit_first_calibration.json")],
                   help="bench_fit.json results (eager, real Trainer) added to the fit: large batches")
    p.add_argument("--out", default=str(CALIBRATION_FILE))
    args = p.parse_args()
    grids = [json.loads(Path(path).read_text()) for path in args.grid]
    grid = grids[0]
    rows = [r for g in grids for r in g["rows"] if not r.get("oom")]
    for path in args.extra:
        for r in json.loads(Path(path).read_text())["results"]:
            if "error" not in r and r.get("compile") == "off" and r.get("finished"):
                rows.append({"variant": r["variant"], "batch": r["batch"], "image_size": r["image_size"],
                             "precision": r["precision"], "train_peak_reserved_gib": r["peak_reserved_gib"],
                             "source": "bench_fit"})
    contexts = [r["context_gib"] for r in rows if r.get("context_gib") is not None]
    # What the whole card shows beyond the allocator in real eager Trainer runs (context, cuDNN/cuBLAS
    # handles, driver allocations): larger than the per-process figure, and what a real card loses.
    for path in args.compiled:
        for r in json.loads(Path(path).read_text())["results"]:
            if r.get("impl") in ("reference", "ours-eager") and r.get("peak_nvml_used_gib"):
                contexts.append(r["peak_nvml_used_gib"] - r["peak_reserved_gib"])
    data = {"gpu": grid["gpu"], "torch": grid["torch"], "measured": grid["time"],
            "fitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "context_gib": max(contexts),
            "train": {}, "val": {}, "compiled": {}}
    print(f"{'key':<10}{'fixed':>8}{'a':>8}{'b':>8}{'max |err| %':>13}")
    for key in sorted({(r["variant"], precision_class(r["precision"])) for r in rows}):
        sub = [r for r in rows if (r["variant"], precision_class(r["precision"])) == key]
        name = f"{key[0]}/{key[1]}"
        coeffs = fit_coeffs(sub, "train_peak_reserved_gib")
        data["train"][name] = asdict(coeffs)
        val_rows = [dict(r, val=r["val_peak_allocated_gib"]) for r in sub if "val_peak_allocated_gib" in r]
        sub_fit = [r for r in sub if r.get("source") == "bench_fit"]
        if sub_fit:
            worst = max(abs(coeffs.fixed + coeffs.activations(r["batch"], r["image_size"])
                            - r["train_peak_reserved_gib"]) / r["train_peak_reserved_gib"] * 100 for r in sub_fit)
            print(f"{'':<10}  (incl. {len(sub_fit)} real-Trainer runs at batch "
                  f"{','.join(str(r['batch']) for r in sub_fit)}: max |err| {worst:.1f} %)")
        data["val"][name] = asdict(fit_coeffs(val_rows, "val"))
        errs = [abs(coeffs.fixed + coeffs.activations(r["batch"], r["image_size"]) - r["train_peak_reserved_gib"])
                / r["train_peak_reserved_gib"] * 100 for r in sub]
        print(f"{name:<10}{coeffs.fixed:>8.3f}{coeffs.a:>8.3f}{coeffs.b:>8.3f}{max(errs):>13.1f}")
    # Compiled runs without our whole-step graph (inductor's own graphs: impl ours-compiled-ro, or
    # results from before cuda_graphs existed): extra memory (kernels, graph pools) over eager.
    extras = []
    for path in args.compiled:
        for r in json.loads(Path(path).read_text())["results"]:
            graphed = r.get("settings", {}).get("cuda_graphs") == "on"
            if r.get("impl", "").startswith("ours-compiled") and "error" not in r and not graphed:
                c = data["train"][f"{r['variant']}/mixed"]
                s2 = (r["image_size"] / 288) ** 2
                eager = c["fixed"] + r["batch"] * (c["a"] * s2 + c["b"] * s2 * s2)
                extras.append((r["variant"], r["peak_nvml_used_gib"] - data["context_gib"] - eager))
    # The real Trainer holds a little more than the bare step (pinned batches in flight, GradScaler
    # state, Lightning's buffers): scale by the median measured/predicted ratio of real-Trainer runs.
    ratios = []
    for r in (r for r in rows if r.get("source") == "bench_fit"):
        c = data["train"][f"{r['variant']}/{precision_class(r['precision'])}"]
        s2 = (r["image_size"] / 288) ** 2
        ratios.append(r["train_peak_reserved_gib"] / (c["fixed"] + r["batch"] * (c["a"] * s2 + c["b"] * s2 * s2)))
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if not ratios and previous.get("trainer_overhead"):
        # no real-Trainer eager runs this time: keep the last measured ratio, and say so
        data["trainer_overhead"] = previous["trainer_overhead"]
        data["trainer_overhead_note"] = "kept from the previous calibration (no real-Trainer eager runs given)"
        print(f"trainer overhead: {previous['trainer_overhead']:.3f}, kept from {args.out}")
    if ratios:
        ratios.sort()
        data["trainer_overhead"] = ratios[len(ratios) // 2]
        print(f"trainer overhead (median measured/predicted over {len(ratios)} real runs): "
              f"{data['trainer_overhead']:.3f}; range {ratios[0]:.3f}-{ratios[-1]:.3f}")
    if extras:
        offset = max(e for _, e in extras)
        print(f"compiled: NVML peak minus (context + eager prediction): {extras}; offset {offset:.2f} GiB")
        data["compiled"] = {v: {"ratio": 1.0, "offset": offset} for v in VARIANTS}
        data["compiled_note"] = ("offset = largest measured (NVML peak - context - eager prediction) over "
                                 f"{sorted({v for v, _ in extras})}; ratio not fitted (too few points)")
    elif previous.get("compiled"):
        # No ungraphed compiled runs given (inductor's own CUDA graphs, "reduce-overhead"): keep the
        # last measured extra rather than predicting those runs as if they were eager.
        kept = "kept from the previous calibration (no ungraphed compiled runs given): "
        data["compiled"] = previous["compiled"]
        data["compiled_note"] = kept + str(previous.get("compiled_note", "")).removeprefix(kept)
        print(f"compiled: kept from {args.out}")
    graph_offset(data, args.compiled)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps(data, indent=2))  # the app reads it: never half a file
    print(f"wrote {args.out}")


def graph_offset(data: dict, paths: list[str]) -> None:
    """Whole-step graph runs: the allocator's reserved peak minus (training peak + validation activations).

    The reserved peak, not NVML's card-wide figure: it is this process's own, so graphed runs measured
    beside the memory grid (both only measure memory) are not disturbed by it; the context that NVML would
    add is the calibrated ``context_gib``, the same for prediction and measurement."""
    from medseg_gui.core.planning.memory import MemoryModelData, MemoryQuery

    model = MemoryModelData(data)
    residuals = []
    for path in paths:
        for r in json.loads(Path(path).read_text())["results"]:
            if (r.get("settings", {}).get("cuda_graphs") != "on" or "error" in r or r.get("memory_superseded")
                    or not r.get("peak_reserved_gib")):
                continue
            if r.get("settings", {}).get("fast_path") == "off":
                continue  # transformers' own modules: not what the app trains (core/engine/fast_segformer.py)
            q = MemoryQuery(r["variant"], r["batch"], r["image_size"], 4, "bf16-mixed")
            val = model.val_activations(q)
            residuals.append((r["case"], r["impl"], model.activations(q) + val,
                              r["peak_reserved_gib"] - model.train_peak(q) - val))
    if not residuals:
        return
    offset, share = upper_envelope([(x, y) for _, _, x, y in residuals])
    print("graphs: reserved peak minus (train + validation activations), against the activations: "
          + ", ".join(f"{c} {i}: {y:+.2f} at {x:.2f}" for c, i, x, y in residuals)
          + f"\n  covered by {offset:.3f} GiB + {share:.4f} x activations")
    data["graphs"] = {"offset": offset, "per_activation_gib": share,
                      "note": f"upper envelope of the residuals of {len(residuals)} graphed runs "
                              f"({sorted({c for c, _, _, _ in residuals})})"}


def upper_envelope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The line ``offset + share x`` (both >= 0) lying on or above every point with the least total excess.

    Why not the largest residual as a constant: the graph's excess grows with the batch (+0.04 GiB at
    b0 . 2 . 224, up to +0.47 at batch 32), so a constant big enough for batch 32 would waste a sixth of a
    4 GB card's usable memory."""
    import numpy as np

    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    best: tuple[float, float, float] | None = None
    top = max(0.0, float(np.max(y / np.maximum(x, 1e-3))))
    for share in np.linspace(0.0, top, 401):
        offset = max(0.0, float(np.max(y - share * x)))
        excess = float(np.sum(offset + share * x - y))
        if best is None or excess < best[0]:
            best = (excess, offset, float(share))
    assert best is not None
    return best[1], best[2]


if __name__ == "__main__":
    main()
