"""What a folder the user picked in the wizard holds, and where an import of it should go (no Qt).

The data layer reads two layouts directly (the tutorial's train/valid split and flat images/ +
masks/); Kaggle csv+RLE, DICOM and NIfTI datasets must first be converted by its importers into a
new folder. This module only looks (names and a few file headers, never a full read), so it can run
on the GUI thread while the user types a path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

READY_KINDS = ("split", "flat")
IMPORT_KINDS = ("kaggle", "dicom", "nifti")
KIND_LABELS = {"split": "train/valid split (the tutorial's layout)", "flat": "flat images/ + masks/ folders",
               "kaggle": "raw UW-Madison Kaggle layout (train.csv with RLE masks)",
               "dicom": "DICOM series with segmentation objects", "nifti": "NIfTI image/label volumes"}
SCAN_LIMIT = 400  # directory entries looked at when searching for volumes: enough to recognise, never slow


@dataclass
class SourceInfo:
    path: Path
    kind: str | None  # one of READY_KINDS / IMPORT_KINDS, or None (not a dataset)
    message: str  # one sentence for the user: what was found, or what is wrong and what to do

    @property
    def ready(self) -> bool:
        return self.kind in READY_KINDS

    @property
    def needs_import(self) -> bool:
        return self.kind in IMPORT_KINDS


def _walk(root: Path, max_depth: int):
    """Files under ``root`` up to ``max_depth`` folders deep, at most SCAN_LIMIT entries in all."""
    seen = 0
    stack = [(root, 0)]
    while stack and seen < SCAN_LIMIT:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > SCAN_LIMIT:
                return
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth < max_depth:
                    stack.append((Path(entry.path), depth + 1))
            else:
                yield Path(entry.path)


def detect_source(path: str | Path) -> SourceInfo:
    """Classify ``path``: a layout the loader reads as is, one the importers convert, or neither."""
    from medseg_gui.core.data.formats import DatasetLayoutError, detect_layout

    root = Path(path).expanduser()
    if not str(path).strip():
        return SourceInfo(root, None, "Choose a dataset folder.")
    try:
        layout = detect_layout(root)
        return SourceInfo(root, layout, f"Found a {KIND_LABELS[layout]}.")
    except DatasetLayoutError as exc:
        layout_error = str(exc)
    if not root.is_dir():
        return SourceInfo(root, None, layout_error)
    if (root / "train.csv").is_file() and (root / "train").is_dir():
        return SourceInfo(root, "kaggle", f"Found a {KIND_LABELS['kaggle']}; it will be converted.")
    files = list(_walk(root, 3))
    if any(f.name.lower().endswith((".nii", ".nii.gz")) for f in files):
        return SourceInfo(root, "nifti", f"Found {KIND_LABELS['nifti']}; they will be sliced into a new folder.")
    from medseg_gui.core.imageio import is_dicom_file

    if any(f.suffix.lower() == ".dcm" or (not f.suffix and is_dicom_file(f)) for f in files[:200]):
        return SourceInfo(root, "dicom", f"Found {KIND_LABELS['dicom']}; they will be sliced into a new folder.")
    return SourceInfo(root, None, layout_error)


def default_import_destination(source: Path, kind: str, base: Path | None = None) -> Path:
    """A new folder under the app's ``datasets/`` for an import of ``source`` (never inside the source)."""
    from medseg_gui.core.paths import app_home

    base = base or (app_home() / "datasets")
    stem = f"{source.name or 'dataset'}-{kind}"
    candidate = base / stem
    n = 2
    while candidate.exists() and any(candidate.iterdir()):
        candidate = base / f"{stem}-{n}"
        n += 1
    return candidate


def run_import(kind: str, source: Path, destination: Path, progress=None):
    """Call the data layer's importer for ``kind``; returns its ``ImportSummary`` (raises its errors)."""
    if kind == "kaggle":
        from medseg_gui.core.data.kaggle import import_kaggle

        return import_kaggle(source, destination, progress=progress)
    if kind in ("dicom", "nifti"):
        from medseg_gui.core.data.volume_import import import_volumes

        return import_volumes(source, destination, kind=kind, progress=progress)
    if kind == "flat":
        from medseg_gui.core.data.flat_import import import_flat

        return import_flat(source, destination, progress=progress)
    raise ValueError(f"no importer for {kind!r}; expected one of kaggle, dicom, nifti, flat")
