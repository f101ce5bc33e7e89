"""`medseg predict MODEL INPUT... --out DIR [--overlay] [--json]`: masks for images, folders and volumes.

Headless twin of the viewer: the same loader, pre-processing and writers (``core.inference``,
``core.predict_export``), so a mask from the command line equals the one the viewer exports.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg_gui.cli.common import fail, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="segment images, folders and volumes with a trained model",
        description="Write a mask for every input: PNG of class ids for 2D images (and slice folders), "
                    "NIfTI (.nii.gz, in the source's space) for DICOM and NIfTI volumes.")
    p.add_argument("model", help="model bundle folder, training run folder, or .safetensors beside medseg.json")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file (PNG/JPEG/TIFF), folder of images, DICOM file or series folder, NIfTI file")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--overlay", action="store_true", help="also write overlay PNGs (mask over the image)")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    p.add_argument("--contour", action="store_true", help="draw outlines instead of filled overlays")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    p.set_defaults(handler=run_predict)


@dataclass
class Job:
    source: Path
    out_dir: Path


def expand_inputs(inputs: list[str], out: Path) -> tuple[list[Job], list[dict[str, Any]]]:
    """Files and folders → one job per image/volume. A folder of DICOM files is one series; a folder of
    2D images gives one job per image (their sizes may differ), written to a sub-folder of its name."""
    from medseg_gui.core.imageio import (DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, is_dicom_file,
                                         natural_key)

    jobs: list[Job] = []
    errors: list[dict[str, Any]] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            errors.append({"input": str(path), "error": f"{path}: not found — check the path"})
            continue
        if path.is_file():
            jobs.append(Job(path, out))
            continue
        files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: natural_key(p.name))
        if any(p.name.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(p) for p in files):
            jobs.append(Job(path, out))
            continue
        members = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES + NIFTI_SUFFIXES)]
        if not members:
            errors.append({"input": str(path), "error": f"{path}: no images, DICOM or NIfTI files in the folder"})
        jobs.extend(Job(p, out / path.name) for p in members)
    return jobs, errors


def predict_one(predictor: Any, job: Job, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from medseg_gui.core.imageio import read_volume
    from medseg_gui.core.inference import volume_to_uint8
    from medseg_gui.core.overlay import CONTOUR, FILLED
    from medseg_gui.core.predict_export import export_volume, safe_stem

    t0 = time.perf_counter()
    volume = read_volume(job.source)
    display = volume_to_uint8(volume)
    result = predictor.predict_volume(display)
    exported = export_volume(job.out_dir, safe_stem(job.source), volume, result.labels, display,
                             predictor.class_colors, overlay=args.overlay, opacity=args.opacity,
                             mode=CONTOUR if args.contour else FILLED)
    counts = np.bincount(result.labels.ravel(), minlength=predictor.num_classes)
    total = max(1, int(result.labels.size))
    return {
        "input": str(job.source), "kind": volume.kind, "shape": list(volume.data.shape),
        "slices": volume.n_slices, "time_ms": round((time.perf_counter() - t0) * 1e3, 1),
        "class_fraction": {name: round(int(counts[k]) / total, 5) for k, name in enumerate(predictor.class_names)},
        "masks": [str(p) for p in exported.masks], "nifti": str(exported.nifti) if exported.nifti else None,
        "overlays": [str(p) for p in exported.overlays],
    }


def run_predict(args: argparse.Namespace) -> int:
    from medseg_gui.core.imageio import ImageReadError
    from medseg_gui.core.inference import ModelLoadError, Predictor

    if not 0.0 <= args.opacity <= 1.0:
        return fail(f"--opacity {args.opacity} is outside 0..1")
    try:
        predictor = Predictor.from_path(args.model, device=args.device)
    except ModelLoadError as exc:
        return fail(str(exc))
    out = Path(args.out).expanduser()
    jobs, errors = expand_inputs(args.inputs, out)
    if not args.json:
        for err in errors:
            print(f"error: {err['error']}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    for job in jobs:
        try:
            summary = predict_one(predictor, job, args)
        except (ImageReadError, ValueError, OSError) as exc:
            errors.append({"input": str(job.source), "error": str(exc)})
            if not args.json:
                print(f"error: {exc}", file=sys.stderr)
            continue
        results.append(summary)
        if not args.json:
            outputs = ([summary["nifti"]] if summary["nifti"] else []) + summary["masks"]
            shown = ", ".join(outputs[:2]) + (f" (+{len(outputs) - 2} more)" if len(outputs) > 2 else "")
            fg = ", ".join(f"{k} {v:.1%}" for k, v in list(summary["class_fraction"].items())[1:])
            print(f"{summary['input']}: {summary['slices']} slice(s) {tuple(summary['shape'])} in "
                  f"{summary['time_ms']:.0f} ms → {shown}" + (f"; {len(summary['overlays'])} overlay(s)"
                                                              if summary["overlays"] else "") + f" [{fg}]")
    if args.json:
        print_json({"model": str(args.model), "model_info": predictor.describe(), "out": str(out),
                    "results": results, "errors": errors})
    else:
        print(f"{len(results)} input(s) done, {len(errors)} failed; model {predictor.describe()}")
    return 1 if errors or not results else 0
