"""`medseg predict MODEL INPUT... --out DIR [--overlay] [--format dicom-seg] [--json]`: masks for images,
folders and volumes.

Headless twin of the viewer: the same loader, pre-processing and writers (``core.inference``,
``core.predict_export``), so a mask from the command line equals the one the viewer exports.

Outputs never collide and never replace anything: inputs whose names map to one output name
(``a/x.png`` and ``b/x.png``, ``x.png`` and ``x.jpg``, ``é.png`` and ``è.png``) get ``_2``, ``_3``…
(said in the output), and an input whose output file already exists is refused — the others go on —
unless ``--overwrite`` is given.
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace files that already exist in --out (default: refuse that input, go on)")
    p.add_argument("--format", dest="mask_format", choices=("auto", "dicom-seg"), default="auto",
                   help="auto: NIfTI for volumes, PNG for images; dicom-seg: one DICOM SEG per DICOM series "
                        "(NAME_seg.dcm, refers to the source series, one segment per class) for PACS or 3D Slicer")
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    p.set_defaults(handler=run_predict)


@dataclass
class Job:
    source: Path
    out_dir: Path


def expand_inputs(inputs: list[str], out: Path) -> tuple[list[Job], list[dict[str, Any]]]:
    """Files and folders → one job per image/volume. A folder of DICOM files is one series; a folder of
    2D images gives one job per image (their sizes may differ), written to a sub-folder of its name."""
    from medseg_gui.core.imaging.dicom import is_dicom_file
    from medseg_gui.core.imaging.volume import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, natural_key
    from medseg_gui.core.output_guard import not_a_regular_file

    jobs: list[Job] = []
    errors: list[dict[str, Any]] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            errors.append({"input": str(path), "error": f"{path}: not found — check the path"})
            continue
        if not path.is_dir():
            problem = not_a_regular_file(path)  # a FIFO or device would block or never end
            if problem:
                errors.append({"input": str(path), "error": f"{path}: {problem} — give image files or folders"})
            else:
                jobs.append(Job(path, out))
            continue
        try:
            files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")),
                           key=lambda p: natural_key(p.name))
        except OSError as exc:
            errors.append({"input": str(path), "error": f"{path}: cannot list the folder ({exc.strerror or exc})"})
            continue
        if any(p.name.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(p) for p in files):
            jobs.append(Job(path, out))
            continue
        members = [p for p in files if p.name.lower().endswith(IMAGE_SUFFIXES + NIFTI_SUFFIXES)]
        if not members:
            errors.append({"input": str(path), "error": f"{path}: no images, DICOM or NIfTI files in the folder"})
        jobs.extend(Job(p, out / path.name) for p in members)
    return jobs, errors


class OutputNames:
    """Output stems that stay distinct within one run: an input whose name maps to a stem (or files)
    another input already took gets ``_2``, ``_3``… instead of silently replacing that output."""

    def __init__(self) -> None:
        self.stems: dict[Path, set[str]] = {}
        self.files: set[str] = set()

    def claim(self, job: Job, volume: Any, overlay: bool, fmt: str = "auto") -> tuple[str, str]:
        """(stem, note) for ``job``; ``note`` says why the stem differs from the input's name ('' if not)."""
        from medseg_gui.core.output_guard import unique_name
        from medseg_gui.core.imaging.predict_export import planned_outputs, safe_stem

        wanted = safe_stem(job.source)
        taken = self.stems.setdefault(job.out_dir, set())
        stem = unique_name(wanted, taken)
        while any(str(p).lower() in self.files
                  for p in planned_outputs(job.out_dir, stem, volume, overlay=overlay, fmt=fmt)):
            taken.add(stem)
            stem = unique_name(wanted, taken)
        taken.add(stem)
        self.files.update(str(p).lower() for p in planned_outputs(job.out_dir, stem, volume, overlay=overlay,
                                                                  fmt=fmt))
        note = "" if stem == wanted else (f"another input already uses the output name '{wanted}'; "
                                          f"this one is written as '{stem}'")
        return stem, note


def predict_one(predictor: Any, job: Job, args: argparse.Namespace, names: OutputNames) -> dict[str, Any]:
    import numpy as np

    from medseg_gui.core.imaging.read import read_volume
    from medseg_gui.core.imaging.model_input import volume_to_uint8
    from medseg_gui.core.imaging.overlay import CONTOUR, FILLED
    from medseg_gui.core.imaging.predict_export import export_volume, planned_outputs
    from medseg_gui.core.output_guard import check_file_target

    t0 = time.perf_counter()
    volume = read_volume(job.source)
    fmt = getattr(args, "mask_format", "auto")
    stem, note = names.claim(job, volume, args.overlay, fmt)
    for path in planned_outputs(job.out_dir, stem, volume, overlay=args.overlay, fmt=fmt):  # refuse before the work
        check_file_target(path, replace=args.overwrite, flag="--overwrite")
    display = volume_to_uint8(volume)
    result = predictor.predict_volume(display)
    exported = export_volume(job.out_dir, stem, volume, result.labels, display,
                             predictor.class_colors, overlay=args.overlay, opacity=args.opacity,
                             mode=CONTOUR if args.contour else FILLED, overwrite=args.overwrite,
                             fmt=fmt, class_names=predictor.class_names)
    counts = np.bincount(result.labels.ravel(), minlength=predictor.num_classes)
    total = max(1, int(result.labels.size))
    return {
        "input": str(job.source), "kind": volume.kind, "shape": list(volume.data.shape),
        "slices": volume.n_slices, "time_ms": round((time.perf_counter() - t0) * 1e3, 1),
        "class_fraction": {name: round(int(counts[k]) / total, 5) for k, name in enumerate(predictor.class_names)},
        "masks": [str(p) for p in exported.masks], "nifti": str(exported.nifti) if exported.nifti else None,
        "overlays": [str(p) for p in exported.overlays], "note": note,
        "dicom_seg": str(exported.dicom_seg) if exported.dicom_seg else None,
    }


def _destination_unusable(exc: BaseException) -> bool:
    """A read-only, full or forbidden output drive: not a problem of one input."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                                                      getattr(errno, "EDQUOT", errno.ENOSPC))


def run_predict(args: argparse.Namespace) -> int:
    from medseg_gui.core.imaging.volume import ImageReadError
    from medseg_gui.core.engine.inference import ModelLoadError, Predictor
    from medseg_gui.core.planning.precision import DeviceError, resolve_device
    from medseg_gui.core.output_guard import os_error_line

    if not 0.0 <= args.opacity <= 1.0:
        return fail(f"--opacity {args.opacity} is outside 0..1")
    try:
        predictor = Predictor.from_path(args.model, device=resolve_device(args.device))
    except (ModelLoadError, DeviceError) as exc:
        return fail(str(exc))
    for warning in predictor.info.warnings:  # e.g. NaN weights, fp16 weights converted
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        return fail(f"--out {out} exists and is not a folder", "choose a folder for the masks")
    jobs, errors = expand_inputs(args.inputs, out)
    if not args.json:
        for err in errors:
            print(f"error: {err['error']}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    names = OutputNames()
    for n, job in enumerate(jobs):
        try:
            summary = predict_one(predictor, job, args, names)
        except (ImageReadError, ValueError, OSError) as exc:  # OutputRefused is a ValueError
            message = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
            errors.append({"input": str(job.source), "error": message})
            if not args.json:
                print(f"error: {job.source}: {message}" if str(job.source) not in message else f"error: {message}",
                      file=sys.stderr)
            if _destination_unusable(exc):  # every later input would fail the same way: stop here
                rest = jobs[n + 1:]
                errors += [{"input": str(j.source), "error": "not processed: the output folder cannot be written"}
                           for j in rest]
                if rest and not args.json:
                    print(f"error: stopped; {len(rest)} more input(s) not processed", file=sys.stderr)
                break
            continue
        results.append(summary)
        if not args.json:
            outputs = [summary[k] for k in ("nifti", "dicom_seg") if summary[k]] + summary["masks"]
            shown = ", ".join(outputs[:2]) + (f" (+{len(outputs) - 2} more)" if len(outputs) > 2 else "")
            fg = ", ".join(f"{k} {v:.1%}" for k, v in list(summary["class_fraction"].items())[1:])
            print(f"{summary['input']}: {summary['slices']} slice(s) {tuple(summary['shape'])} in "
                  f"{summary['time_ms']:.0f} ms → {shown}" + (f"; {len(summary['overlays'])} overlay(s)"
                                                              if summary["overlays"] else "") + f" [{fg}]")
            if summary["note"]:
                print(f"  note: {summary['note']}")
    if args.json:
        print_json({"model": str(args.model), "model_info": predictor.describe(), "out": str(out),
                    "results": results, "errors": errors})
    else:
        print(f"{len(results)} input(s) done, {len(errors)} failed; model {predictor.describe()}")
    return 1 if errors or not results else 0
