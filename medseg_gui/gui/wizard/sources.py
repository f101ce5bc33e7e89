"""What a folder the user picked in the wizard holds, and where an import of it should go (no Qt).

The data layer reads two layouts directly (a train/ + valid/ split and flat images/ +
masks/); Kaggle csv+RLE, DICOM and NIfTI datasets must first be converted by its importers into a
new folder. This module only looks (names and a few file headers, never a full read), so it can run
on the GUI thread while the user types a path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseg_gui.core.words import plural

READY_KINDS = ("split", "flat")
IMPORT_KINDS = ("kaggle", "dicom", "nifti")
KIND_LABELS = {"split": "train/ + valid/ split", "flat": "flat images/ + masks/ folders",
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
        return _nifti_summary(root, files)
    from medseg_gui.core.imaging.dicom import is_dicom_file

    dicoms = [f for f in files if f.suffix.lower() == ".dcm" or (not f.suffix and is_dicom_file(f))]
    if dicoms:
        return _dicom_summary(root, dicoms, truncated=len(files) >= SCAN_LIMIT)
    return SourceInfo(root, None, layout_error)


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _nifti_summary(root: Path, files: list[Path]) -> SourceInfo:
    """What the NIfTI importer will pair (its own rule), and what it will have to leave out."""
    from medseg_gui.core.data.volume_import import find_nifti_pairs

    pairs, unpaired = find_nifti_pairs(root)
    n_files = sum(1 for f in files if f.name.lower().endswith((".nii", ".nii.gz")))
    if not pairs:
        missing = f" ({_listing(unpaired, 2)})" if unpaired else ""
        return SourceInfo(root, None, f"Found {plural(n_files, 'NIfTI file')} but no image/label pairs{missing}. "
                          "Training needs a label volume for each image: put them in imagesTr/ + labelsTr/ "
                          "(or images/ + labels/) with matching names, or name each label like its image "
                          "with _seg (scan.nii.gz + scan_seg.nii.gz).")
    text = (f"Found {plural(len(pairs), 'NIfTI image/label pair')} ({_listing([name for name, _, _ in pairs])})")
    if unpaired:
        text += f"; {plural(len(unpaired), 'file')} without a partner will be left out ({_listing(unpaired, 2)})"
    return SourceInfo(root, "nifti", text + ". Import slices them into a new folder.")


def _dicom_summary(root: Path, dicoms: list[Path], truncated: bool) -> SourceInfo:
    """Series (by description and slice count) and the SEG objects that label them, from the headers."""
    from medseg_gui.core.imaging.dicom import SEG_SOP_CLASS_UID, read_dicom_header
    from medseg_gui.core.imaging.volume import ImageReadError

    series: dict[str, dict] = {}
    seg_refs: list[str | None] = []
    for path in dicoms:
        try:
            ds = read_dicom_header(path)
        except (ImageReadError, OSError, ValueError):
            continue
        if ds.get("Modality") == "SEG" or str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID:
            refs = ds.get("ReferencedSeriesSequence")
            seg_refs.append(str(refs[0].get("SeriesInstanceUID", "")) if refs else None)
            continue
        if "Rows" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        entry = series.setdefault(uid, {"n": 0, "name": _series_name(ds, path, root)})
        entry["n"] += 1
    described = {uid: f"'{e['name']}' ({plural(e['n'], 'image')})" for uid, e in series.items()}
    labelled = [uid for uid in series if uid in seg_refs]
    unlabelled = [uid for uid in series if uid not in seg_refs]
    scanned = f" (the first {SCAN_LIMIT} files looked at)" if truncated else ""
    if not series:
        return SourceInfo(root, None, f"Found {plural(len(dicoms), 'DICOM file')}{scanned} but no image series "
                          "(only segmentation objects or non-image files). Add the image series the "
                          "segmentations were drawn on.")
    if not labelled:
        orphan = f"; {plural(len(seg_refs), 'segmentation')} refer to series not in the folder" if seg_refs else ""
        return SourceInfo(root, None, f"Found {plural(len(series), 'DICOM image series', 'DICOM image series')}"
                          f"{scanned}: {_listing([described[u] for u in series])} — but no segmentation (DICOM "
                          f"SEG object) for {'it' if len(series) == 1 else 'them'}{orphan}. Training needs a mask "
                          "for each image: add the SEG files to this folder, or export the labels as NIfTI "
                          "(scan.nii.gz + scan_seg.nii.gz).")
    text = (f"Found {plural(len(labelled), 'DICOM series', 'DICOM series')} with a segmentation (SEG){scanned}: "
            f"{_listing([described[u] for u in labelled])}")
    if unlabelled:
        text += (f"; {plural(len(unlabelled), 'series', 'series')} without one will be left out: "
                 f"{_listing([described[u] for u in unlabelled], 2)}")
    return SourceInfo(root, "dicom", text + ". Import slices them into a new folder.")


def _series_name(ds, path: Path, root: Path) -> str:
    """A series as a person knows it: its description, else its number, else its folder."""
    for key in ("SeriesDescription", "ProtocolName"):
        value = str(ds.get(key, "") or "").strip()
        if value:
            return value
    number = str(ds.get("SeriesNumber", "") or "").strip()
    if number:
        return f"series {number}"
    folder = path.parent.relative_to(root) if path.parent != root else Path(root.name)
    return str(folder)


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
