"""Slice DICOM and NIfTI image/label volumes into the tutorial's 2D split layout.

Sources (read only):

* **NIfTI** — a folder in nnU-Net style (``imagesTr/x_0000.nii.gz`` + ``labelsTr/x.nii.gz``), or
  ``images/`` + ``labels/`` (or ``masks/``) folders with matching names, or one folder holding
  ``x.nii.gz`` next to ``x_seg.nii.gz`` / ``x_label.nii.gz`` / ``x_mask.nii.gz``; or one explicit image
  file plus ``label=``. Only the first channel (``_0000``) of multi-channel nnU-Net cases is used.
* **DICOM** — a folder (searched recursively) of image series and DICOM SEG objects; each SEG is
  paired with the series it references. Or one series (folder/file) plus ``label=`` naming a SEG
  file or a label series/NIfTI whose pixel values are class ids.

Each volume becomes slices ``NAME_zNNNN.png``: images windowed to 8 bits with the volume's own
window (a DICOM's window, soft tissue for CT, else a percentile window over the whole volume, so
all slices of a volume share one mapping), masks as class ids. Whole volumes go to one split (a
patient's volumes stay together for DICOM, grouped by PatientID). ``keep_empty`` keeps that
fraction of the slices without any label (deterministically), since long runs of empty slices
mostly teach the model to predict background.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg_gui.core.data.formats import Pair, split_pairs
from medseg_gui.core.data.import_output import (
    DatasetImportError,
    ImportSummary,
    Progress,
    StagedDataset,
    check_destination,
    safe_name,
)
from medseg_gui.core.imaging.dicom import (SEG_SOP_CLASS_UID, is_dicom_file, is_dicom_seg, read_dicom_header,
                                           read_dicom_seg_full, read_dicom_series)
from medseg_gui.core.imaging.read import read_volume
from medseg_gui.core.imaging.volume import ImageReadError
from medseg_gui.core.imaging.window import default_window, to_uint8
from medseg_gui.core.output_guard import unique_name

NNUNET_CHANNEL_RE = re.compile(r"_(\d{4})$")
LABEL_SUFFIX_RE = re.compile(r"[_\-](seg|label|labels|mask|gt)$", re.IGNORECASE)


@dataclass
class VolumeCase:
    """One image volume and where its labels come from, loaded only when its turn comes."""

    name: str    # unique output prefix
    group: str   # split group (patient)
    image: str   # description for messages (file or folder)
    label: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, list[str]]]  # -> (image u8, labels u8, class names)


# --------------------------------------------------------------------------------------- labels

def _labels_from_volume(data: np.ndarray, label_path: str, num_classes: int | None) -> np.ndarray:
    """Integer class ids from a label volume; errors name the file and the offending values."""
    if data.ndim == 4:
        raise DatasetImportError(f"{label_path}: label volume has colour channels; labels must be one "
                                 "integer class id per voxel")
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all() or np.any(np.mod(data, 1) != 0):
            bad = data[~finite] if not finite.all() else data[np.mod(data, 1) != 0]
            raise DatasetImportError(f"{label_path}: label values must be whole numbers (class ids); found "
                                     f"{float(bad.flat[0]):g} — is this an image rather than a label map?")
    elif data.dtype.kind not in "biu":
        raise DatasetImportError(f"{label_path}: label dtype {data.dtype} is not an integer class map")
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if lo < 0 or hi > 255:
        raise DatasetImportError(f"{label_path}: label values {lo}..{hi} are outside 0..255 — "
                                 "labels must be class ids (0 = background)")
    if num_classes is not None and hi >= num_classes:
        values = sorted(int(v) for v in np.unique(data) if v >= num_classes)
        raise DatasetImportError(f"{label_path}: label values {values} are not below --num-classes "
                                 f"{num_classes} — raise --num-classes or fix the labels")
    return data.astype(np.uint8)


def _check_same_grid(image_shape: tuple[int, ...], label_shape: tuple[int, ...], image: str, label: str) -> None:
    if tuple(image_shape[:3]) != tuple(label_shape[:3]):
        raise DatasetImportError(f"size mismatch: image {image} is {tuple(image_shape[:3])} (z, y, x) but "
                                 f"label {label} is {tuple(label_shape[:3])} — the label must be "
                                 "drawn on the same grid as its image")


def _image_u8(volume) -> np.ndarray:
    if volume.data.dtype == np.uint8:
        return volume.data
    return to_uint8(volume.data, default_window(volume))


# ---------------------------------------------------------------------------------------- NIfTI

def _nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")) and not name.startswith(".")


def find_nifti_pairs(source: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name, image, label) triples found in ``source`` and a list of unpaired files with reasons."""
    def sub(*names: str) -> Path | None:
        for n in names:
            for cand in (source / n, source / n.lower()):
                if cand.is_dir():
                    return cand
        return None

    images_dir = sub("imagesTr", "images", "image")
    labels_dir = sub("labelsTr", "labels", "label", "masks", "mask")
    skipped: list[str] = []
    if images_dir and labels_dir:
        images = {}
        for p in sorted(filter(_is_nifti, images_dir.iterdir())):
            stem = _nifti_stem(p)
            m = NNUNET_CHANNEL_RE.search(stem)
            if m and m.group(1) != "0000":
                continue  # extra nnU-Net channels: only the first is imported
            images[stem[: m.start()] if m else stem] = p
        labels = {_nifti_stem(p): p for p in sorted(filter(_is_nifti, labels_dir.iterdir()))}
    else:
        files = sorted(filter(_is_nifti, source.iterdir())) if source.is_dir() else []
        labels, images = {}, {}
        for p in files:
            stem = _nifti_stem(p)
            m = LABEL_SUFFIX_RE.search(stem)
            if m:
                labels[stem[: m.start()]] = p
            else:
                images[stem] = p
    pairs = [(name, images[name], labels[name]) for name in sorted(images) if name in labels]
    skipped += [f"{images[n].name}: no label volume found for it" for n in sorted(images) if n not in labels]
    skipped += [f"{labels[n].name}: no image volume found for it" for n in sorted(labels) if n not in images]
    return pairs, skipped


def _nifti_case(name: str, image: Path, label: Path, num_classes: int | None, warnings: list[str]) -> VolumeCase:
    def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
        img = read_volume(image)
        lab = read_volume(label)
        _check_same_grid(img.data.shape, lab.data.shape, str(image), str(label))
        if img.affine is not None and lab.affine is not None and not np.allclose(img.affine, lab.affine, atol=1e-2):
            warnings.append(f"{label.name}: its affine differs from {image.name}'s; slices were paired by "
                            "voxel index")
        return _image_u8(img), _labels_from_volume(lab.data, str(label), num_classes), []

    return VolumeCase(safe_name(name), safe_name(name), str(image), str(label), load)


# ---------------------------------------------------------------------------------------- DICOM

def series_name(description: str | None, number: str | None, folder: Path | str) -> str:
    """How a message names an image series: by what the scanner called it and where it lies. A person
    recognises "series 'AX T2' in P1/mr"; a 60-digit SeriesInstanceUID tells them nothing."""
    what = f"image series '{description}'" if description else "the image series"
    if number:
        what += f" (number {number})"
    return f"{what} in {folder}"


def _folder_words(folder: Path, source: Path) -> str:
    """``folder`` relative to the scanned ``source`` (the full path when it is ``source`` itself: never ".")."""
    try:
        rel = folder.relative_to(source)
    except ValueError:
        return str(folder)
    return str(rel) if rel.parts else str(folder)


def _seg_on_image_grid(seg_path: Path, volume, num_classes: int | None) -> tuple[np.ndarray, list[str]]:
    """Place a SEG's slices on the matching slices of its image series (by SOP UID, else position)."""
    seg = read_dicom_seg_full(seg_path)
    z_n, h, w = volume.data.shape[:3]
    image_series = series_name(volume.meta.get("series_description"), volume.meta.get("series_number"),
                               volume.source)
    if seg.labels.shape[1:] != (h, w):
        raise DatasetImportError(f"size mismatch: SEG {seg_path} frames are {seg.labels.shape[1:]} but "
                                 f"{image_series} has slices of {(h, w)} — the SEG was drawn on another series; "
                                 "pair it with the series it was drawn on")
    out = np.zeros((z_n, h, w), dtype=np.uint8)
    uids = volume.meta.get("sop_instance_uids") or []
    positions = np.array(volume.meta.get("positions") or [], dtype=float)
    tol = 0.25 * (volume.spacing[0] if volume.spacing else 1.0)
    for k in range(seg.labels.shape[0]):
        z = None
        if seg.source_uids[k] and seg.source_uids[k] in uids:
            z = uids.index(seg.source_uids[k])
        elif seg.positions[k] is not None and len(positions):
            dist = np.linalg.norm(positions - np.array(seg.positions[k]), axis=1)
            if dist.min() <= max(tol, 1e-3):
                z = int(np.argmin(dist))
        elif seg.labels.shape[0] == z_n:
            z = k
        if z is None:
            raise DatasetImportError(f"{seg_path}: SEG slice {k + 1} (position {seg.positions[k]}) matches no "
                                     f"slice of {image_series} — pair the SEG with the series it "
                                     "was drawn on (all of that series' slices must be in its folder)")
        out[z] = np.maximum(out[z], seg.labels[k])
    if num_classes is not None and out.max() >= num_classes:
        raise DatasetImportError(f"{seg_path}: segment numbers up to {int(out.max())} are not below "
                                 f"--num-classes {num_classes} — raise --num-classes")
    return out, seg.names


def _dicom_label_case(name: str, group: str, image_files: list[Path], image_desc: str, label: Path,
                      num_classes: int | None) -> VolumeCase:
    def load() -> tuple[np.ndarray, np.ndarray, list[str]]:

        vol = read_dicom_series(image_files, source=Path(image_desc))
        if label.is_file() and is_dicom_seg(label):
            labels, names = _seg_on_image_grid(label, vol, num_classes)
            return _image_u8(vol), labels, names
        lab = read_volume(label)
        _check_same_grid(vol.data.shape, lab.data.shape, image_desc, str(label))
        return _image_u8(vol), _labels_from_volume(lab.data, str(label), num_classes), []

    return VolumeCase(name, group, image_desc, str(label), load)


def find_dicom_cases(source: Path, num_classes: int | None, warnings: list[str]
                     ) -> tuple[list[VolumeCase], list[str]]:
    """Scan a folder tree for image series and the SEG objects that reference them."""

    series: dict[str, list[Path]] = {}
    info: dict[str, tuple[str, str, str]] = {}  # uid -> (patient, series number, series description)
    segs: list[tuple[Path, str | None]] = []
    skipped: list[str] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if not is_dicom_file(path):
            continue
        try:
            ds = read_dicom_header(path)
        except ImageReadError as exc:
            skipped.append(f"{path.relative_to(source)}: {exc.reason}")
            continue
        if ds.get("Modality") == "SEG" or str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID:
            refs = ds.get("ReferencedSeriesSequence")
            segs.append((path, str(refs[0].get("SeriesInstanceUID", "")) if refs else None))
            continue
        if "Rows" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        series.setdefault(uid, []).append(path)
        info.setdefault(uid, (str(ds.get("PatientID", "") or ""), str(ds.get("SeriesNumber", "") or ""),
                              str(ds.get("SeriesDescription", "") or "").strip()))
    cases: list[VolumeCase] = []
    used: set[str] = set()
    names: set[str] = set()
    def named(uid: str) -> str:
        return series_name(info[uid][2], info[uid][1], _folder_words(series[uid][0].parent, source))

    first_seg: dict[str, Path] = {}
    for seg_path, ref in segs:
        if not ref:
            skipped.append(f"{seg_path.relative_to(source)}: this segmentation does not say which image series it "
                           f"was drawn on — import it with its series: --label {seg_path.name}")
            continue
        if ref not in series:
            skipped.append(f"{seg_path.relative_to(source)}: the image series this segmentation was drawn on is not "
                           f"in {source} — copy that series into the folder, or remove the segmentation")
            continue
        if ref in used:
            warnings.append(f"{seg_path.relative_to(source)}: a second segmentation of {named(ref)}; only "
                            f"{first_seg[ref].relative_to(source)} was used — move the one you do not want out")
            continue
        used.add(ref)
        first_seg[ref] = seg_path
        patient, number, _ = info[ref]
        folder = series[ref][0].parent
        name = safe_name("_".join(x for x in (patient, f"s{number}" if number else "", folder.name) if x))
        while name in names:
            name += "_b"
        names.add(name)
        cases.append(_dicom_label_case(name, safe_name(patient) if patient else name, series[ref],
                                       str(folder), seg_path, num_classes))
    for uid in series:
        if uid not in used:
            skipped.append(f"{named(uid)}: no segmentation (DICOM SEG) in the folder was drawn on it — add its SEG "
                           "file beside it to import it; it was left out")
    return cases, skipped


# --------------------------------------------------------------------------------------- import

def import_volumes(source: str | Path, destination: str | Path, *, kind: str, label: str | Path | None = None,
                   val_fraction: float = 0.2, seed: int = 42, num_classes: int | None = None,
                   keep_empty: float = 1.0, progress: Progress | None = None) -> ImportSummary:
    """Import DICOM (``kind='dicom'``) or NIfTI (``kind='nifti'``) volumes into ``destination``.

    ``label`` pairs one explicit image (``source``) with its label file/series instead of scanning
    a folder. Raises :class:`DatasetImportError` for anything that would produce wrong masks (size
    mismatch, non-integer labels, labels beyond ``num_classes``), naming the files involved.
    """
    if kind not in ("dicom", "nifti"):
        raise ValueError(f"kind must be 'dicom' or 'nifti', got {kind!r}")
    if not 0.0 <= keep_empty <= 1.0:
        raise DatasetImportError(f"keep_empty must be between 0 and 1 (a fraction), got {keep_empty}")
    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    if not source.exists():
        raise DatasetImportError(f"{source}: not found")
    check_destination(source, destination)
    summary = ImportSummary(str(source), str(destination), kind)
    if label is not None:
        label = Path(label).expanduser()
        if not label.exists():
            raise DatasetImportError(f"{label}: label file/folder not found")
        check_destination(label, destination)
        if kind == "nifti":
            cases = [_nifti_case(_nifti_stem(source), source, label, num_classes, summary.warnings)]
        else:
            files = [source] if source.is_file() else sorted(
                p for p in source.iterdir() if p.is_file() and is_dicom_file(p))
            name = safe_name(source.name if source.is_dir() else source.stem)
            cases = [_dicom_label_case(name, name, files, str(source), label, num_classes)]
    elif kind == "nifti":
        if not source.is_dir():
            raise DatasetImportError(f"{source}: a single NIfTI image needs its label: pass --label LABEL.nii.gz")
        found, skipped = find_nifti_pairs(source)
        summary.skipped += skipped
        cases = [_nifti_case(n, i, lab, num_classes, summary.warnings) for n, i, lab in found]
    else:
        if not source.is_dir():
            raise DatasetImportError(f"{source}: a single DICOM series needs its labels: pass --label SEG.dcm")
        cases, skipped = find_dicom_cases(source, num_classes, summary.warnings)
        summary.skipped += skipped
    if not cases:
        expected = ("imagesTr/ + labelsTr/, images/ + labels/, or x.nii.gz + x_seg.nii.gz" if kind == "nifti"
                    else "image series with DICOM SEG objects that reference them")
        raise DatasetImportError(f"{source}: no image/label volume pairs found; expected {expected}"
                                 + (f" ({summary.skipped[0]})" if summary.skipped else ""))

    taken: set[str] = set()
    for case in cases:  # 'a b' and 'a_b' both become 'a_b': keep both volumes, under distinct names
        unique = unique_name(case.name, taken)
        if unique != case.name:
            summary.warnings.append(f"{case.image}: its name maps to '{case.name}', which another volume already "
                                    f"uses; its slices are written as {unique}_zNNNN.png")
            case.name = unique
        taken.add(unique)
    by_name = {c.name: c for c in cases}
    pseudo = [Pair(image=Path(c.image), mask=Path(c.label), key=c.name, case=c.group) for c in cases]
    train, valid, note = split_pairs(pseudo, val_fraction, seed)
    summary.split_note = note.replace("slices", "volumes")
    summary.cases_train = sorted(p.key for p in train)
    summary.cases_valid = sorted(p.key for p in valid)
    if not valid:
        summary.warnings.append("the validation split is empty (one volume only); add volumes or validate elsewhere")
    jobs = [("train", by_name[p.key]) for p in train] + [("valid", by_name[p.key]) for p in valid]
    class_names: list[str] = []
    with StagedDataset(destination, ["background"]) as out:
        for done, (split, case) in enumerate(jobs):
            image, labels, names = case.load()
            if names and not class_names:
                class_names = names
                out.class_names = names
            elif names and names != class_names:
                summary.warnings.append(f"{case.label}: segment names {names} differ from the first "
                                        f"volume's {class_names}; class ids were kept as numbered")
            rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
            empty_skipped = 0
            for z in range(labels.shape[0]):
                if not labels[z].any() and keep_empty < 1.0 and rng.random() >= keep_empty:
                    empty_skipped += 1
                    continue
                out.write(split, f"{case.name}_z{z:04d}", image[z], labels[z])
            if empty_skipped:
                summary.warnings.append(f"{case.name}: left out {empty_skipped} of {labels.shape[0]} slices "
                                        f"without labels (keep_empty={keep_empty:g})")
            if progress is not None:
                progress(done + 1, len(jobs))
        out.commit(summary)
    return summary
