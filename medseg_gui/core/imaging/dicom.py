"""DICOM: single files (multi-frame included), series folders and SEG label objects, into a
:class:`~medseg_gui.core.imaging.volume.Volume` or a :class:`DicomSeg`.

Public entry points: ``is_dicom_file``, ``has_dicom_magic``, ``read_dicom_header`` (no pixels),
``read_dicom_file``, ``read_dicom_series``, ``is_dicom_seg``, ``read_dicom_seg``, ``read_dicom_seg_full``,
``window_from_dicom``, ``too_many_dicom_pixels``. A volume read here keeps in ``meta`` what a writer
needs to refer back to its source: ``files``, ``sop_instance_uids``, ``positions`` (LPS mm, in slice
order), ``series_uid``, ``study_uid``, ``frame_of_reference_uid``.

Pixel data follows the radiological display convention already; RescaleSlope/Intercept is applied,
MONOCHROME1 inverted, YBR and palette colour converted to RGB. Every header's claimed size is checked
before its pixels are decoded. pydicom is imported inside the functions, so importing this module costs
only numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.imaging.images import require_file, too_many_pixels
from medseg_gui.core.imaging.volume import (DICOM_SUFFIXES, MAX_VOLUME_VOXELS, ImageReadError, Volume, file_suffix,
                                            natural_key)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"


def has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``-like name or a file with the DICOM ``DICM`` marker (extension-less files)."""
    path = Path(path)
    return path.is_file() and (file_suffix(path) in DICOM_SUFFIXES or has_dicom_magic(path))


def _rows_cols(ds: Any) -> tuple[int, int]:
    """Rows and Columns from a DICOM header; 0 where missing or unusable (pydicom's decoder then says so)."""
    try:
        return int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    except (TypeError, ValueError):
        return 0, 0


def too_many_dicom_pixels(ds: Any) -> str:
    """Why a DICOM file's pixel data is refused before decoding ('' when it is not): its header's Rows x
    Columns per frame over the 2D limit (the one PNGs have), or x NumberOfFrames over the NIfTI volume limit.
    Checked on the header so a small compressed file cannot claim gigabytes of pixels."""
    rows, cols = _rows_cols(ds)
    frame = too_many_pixels(cols, rows)
    if frame:
        return frame
    frames = _frame_count(ds)
    total = rows * cols * frames
    if total <= MAX_VOLUME_VOXELS:
        return ""
    return (f"DICOM claims {frames} frames of {cols}x{rows} pixels ({total / 1e9:.1f} billion), over the safety "
            f"limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion (a possible decompression bomb)")


def window_from_dicom(ds: Any) -> tuple[float, float] | None:
    """The first (centre, width) pair a DICOM dataset carries (shared/per-frame groups included)."""
    centre = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if centre is None or width is None:
        voi = _functional_item(ds, "FrameVOILUTSequence", 0)
        if voi is not None:
            centre = _first_number(voi.get("WindowCenter"))
            width = _first_number(voi.get("WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    return centre, width


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0] if len(value) else None
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _dcmread(path: Path, header_only: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=header_only)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no DICOM header)",
                             "remove it from the folder or choose the right file") from None
    except Exception as exc:  # truncated headers raise EOFError/struct.error/OSError...
        raise ImageReadError(path, f"unreadable or truncated DICOM ({type(exc).__name__}: {exc})",
                             "re-copy or re-export the file") from None


def _is_seg(ds: Any) -> bool:
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID or ds.get("Modality") == "SEG"


def read_dicom_header(path: str | os.PathLike) -> Any:
    """The pydicom dataset of a file without its pixel data (cheap: for scanning folders)."""
    return _dcmread(Path(path), header_only=True)


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable DICOM Segmentation object."""
    path = Path(path)
    if not is_dicom_file(path):
        return False
    try:
        return _is_seg(_dcmread(path, header_only=True))
    except ImageReadError:
        return False


def _functional_item(ds: Any, sequence: str, frame: int) -> Any:
    """Item of a functional-group sequence for ``frame`` (per-frame first, then shared), or None."""
    for groups_name, index in (("PerFrameFunctionalGroupsSequence", frame),
                               ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_name)
        if groups is not None and len(groups) > index:
            seq = groups[index].get(sequence)
            if seq is not None and len(seq):
                return seq[0]
    return None


def _pixels(ds: Any, path: Path) -> np.ndarray:
    too_big = too_many_dicom_pixels(ds)
    if too_big:
        raise ImageReadError(path, too_big, "the file is corrupt or not a real scan; re-export it, or split a "
                             "genuine giant series into smaller files")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        reason = str(exc)
        hint = "re-copy or re-export the file"
        if "less than expected" in reason or "truncated" in reason.lower():
            reason = f"pixel data is truncated ({reason})"
        elif "decod" in reason.lower() or "plugin" in reason.lower() or "handler" in reason.lower():
            from medseg_gui.core.imaging.dicom_codecs import missing_decoder_hint

            reason = reason.strip().splitlines()[0].rstrip(":")  # pydicom lists every plugin's failure below
            hint = missing_decoder_hint(ds)
        raise ImageReadError(path, f"cannot decode DICOM pixel data: {reason}", hint) from None
    return arr


def _frame_count(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _geometry(ds: Any, frame: int) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float] | None]:
    """(position, orientation(6), pixel spacing (row, col)) of a frame, from top level or groups."""
    pos = ds.get("ImagePositionPatient")
    ori = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    if pos is None:
        item = _functional_item(ds, "PlanePositionSequence", frame)
        pos = item.get("ImagePositionPatient") if item is not None else None
    if ori is None:
        item = _functional_item(ds, "PlaneOrientationSequence", frame)
        ori = item.get("ImageOrientationPatient") if item is not None else None
    if spacing is None:
        item = _functional_item(ds, "PixelMeasuresSequence", frame)
        spacing = item.get("PixelSpacing") if item is not None else None
    pos_a = np.array([float(v) for v in pos]) if pos is not None and len(pos) == 3 else None
    ori_a = np.array([float(v) for v in ori]) if ori is not None and len(ori) == 6 else None
    sp = (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None
    return pos_a, ori_a, sp


def _rescale(ds: Any, frame: int) -> tuple[float, float]:
    slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and inter is None:
        item = _functional_item(ds, "PixelValueTransformationSequence", frame)
        if item is not None:
            slope, inter = item.get("RescaleSlope"), item.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0,
            float(inter) if inter not in (None, "") else 0.0)


def _apply_rescale(arr: np.ndarray, slope: float, inter: float) -> np.ndarray:
    if slope == 1.0 and inter == 0.0:
        return arr
    if float(slope).is_integer() and float(inter).is_integer():
        return (arr.astype(np.int32) * int(slope) + int(inter)).astype(
            np.int16 if arr.dtype.itemsize <= 2 and abs(slope) == 1 else np.int32)
    return arr.astype(np.float32) * np.float32(slope) + np.float32(inter)


def _frames_of(ds: Any, path: Path) -> list[np.ndarray]:
    """Frames of one DICOM image as 2D grey or RGB arrays, rescaled."""
    arr = _pixels(ds, path)
    n = _frame_count(ds)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if n == 1:
        arr = arr[None]
    if spp == 1 and arr.ndim != 3 or spp == 3 and arr.ndim != 4:
        raise ImageReadError(path, f"unexpected pixel array shape {arr.shape} for {n} frame(s)",
                             "the file's header disagrees with its pixel data; re-export it")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if spp == 3 and photometric.startswith("YBR") and arr.dtype == np.uint8:
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric == "PALETTE COLOR":  # indices into a colour table: show the colours
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageReadError(path, f"cannot apply the DICOM palette ({exc})", "re-export as RGB") from None
        if arr.dtype != np.uint8:  # 16-bit LUT entries
            arr = (arr >> 8).astype(np.uint8)
        spp = 3
    frames = []
    for i in range(arr.shape[0]):
        frame = arr[i]
        if spp == 1:
            slope, inter = _rescale(ds, i)
            frame = _apply_rescale(frame, slope, inter)
            if photometric == "MONOCHROME1":  # inverted grey: bright = low value
                frame = frame.max() + frame.min() - frame
        frames.append(frame)
    return frames


def _dicom_meta(ds: Any) -> dict[str, Any]:
    slope, inter = _rescale(ds, 0)
    return {
        "modality": str(ds.get("Modality", "")) or None,
        "window": window_from_dicom(ds),
        "rescale_applied": (slope, inter) != (1.0, 0.0),
        "rescale": (slope, inter),
        "series_uid": str(ds.get("SeriesInstanceUID", "")) or None,
        "study_uid": str(ds.get("StudyInstanceUID", "")) or None,
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")) or None,
        "series_description": str(ds.get("SeriesDescription", "")).strip() or None,
        "series_number": str(ds.get("SeriesNumber", "")) or None,
        "photometric": str(ds.get("PhotometricInterpretation", "")) or None,
    }


def _affine_lps_to_ras(origin: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray,
                       slice_step: np.ndarray, row_spacing: float, col_spacing: float) -> np.ndarray:
    """Affine from (z, y, x) indices to RAS mm, from DICOM's LPS geometry."""
    aff = np.eye(4)
    aff[:3, 0] = slice_step
    aff[:3, 1] = col_dir * row_spacing  # moving down one row follows the column direction cosine
    aff[:3, 2] = row_dir * col_spacing
    aff[:3, 3] = origin
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS -> RAS
    return flip @ aff


def read_dicom_file(path: Path) -> Volume:
    ds = _dcmread(path)
    if _is_seg(ds):
        raise ImageReadError(path, "is a DICOM SEG (a segmentation), not an image",
                             "open it as a mask (read_dicom_seg) next to its image series")
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(path, f"DICOM without pixel data (modality {ds.get('Modality', '?')})",
                             "choose an image file of the series")
    frames = _frames_of(ds, path)
    data = np.stack(frames)
    meta = _dicom_meta(ds)
    meta["files"] = [str(path)]
    if len(frames) == 1:
        meta["sop_instance_uids"] = [str(ds.get("SOPInstanceUID", ""))]
    spacing, affine, positions = None, None, []
    n = len(frames)
    geoms = [_geometry(ds, i) for i in range(n)]
    pos0, ori, px = geoms[0]
    if ds.get("GridFrameOffsetVector") is not None and pos0 is not None:  # RT dose style
        offsets = [float(v) for v in ds.GridFrameOffsetVector]
        if ori is not None:
            normal = np.cross(ori[:3], ori[3:])
            positions = [pos0 + normal * off for off in offsets[:n]]
    elif all(g[0] is not None for g in geoms):
        positions = [g[0] for g in geoms]
    if positions and ori is not None and px is not None:
        order, step, dz = _order_by_position(positions, ori)
        data = data[order]
        positions = [positions[i] for i in order]
        meta["positions"] = [p.tolist() for p in positions]
        dz = dz or _thickness(ds)
        spacing = (dz, px[0], px[1]) if dz else None
        if step is None and dz:
            step = np.cross(ori[:3], ori[3:]) * dz
        if step is not None:
            affine = _affine_lps_to_ras(positions[0], ori[:3], ori[3:], step, px[0], px[1])
    elif px is not None:
        dz = _thickness(ds)
        spacing = (dz, px[0], px[1]) if dz else None
    if n > 1:
        meta["frames"] = n
    return Volume(data, spacing, path, "dicom", affine=affine, meta=meta)


def _thickness(ds: Any) -> float | None:
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = _first_number(ds.get(key))
        if value:
            return abs(value)
    item = _functional_item(ds, "PixelMeasuresSequence", 0)
    if item is not None:
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            value = _first_number(item.get(key))
            if value:
                return abs(value)
    return None


def _order_by_position(positions: list[np.ndarray], ori: np.ndarray
                       ) -> tuple[list[int], np.ndarray | None, float | None]:
    """Sort slices along the slice normal; return order, mean step vector and slice spacing."""
    normal = np.cross(ori[:3], ori[3:])
    dist = np.array([float(np.dot(p, normal)) for p in positions])
    order = list(np.argsort(dist, kind="stable"))
    if len(positions) < 2:
        return order, None, None
    sorted_pos = np.array([positions[i] for i in order])
    diffs = np.diff(dist[order])
    dz = float(np.median(diffs)) if len(diffs) else None
    if not dz or dz <= 0:
        return order, None, None
    step = (sorted_pos[-1] - sorted_pos[0]) / (len(order) - 1)
    return order, step, dz


def read_dicom_series(files: Iterable[str | os.PathLike], source: str | os.PathLike | None = None
                      ) -> Volume:
    """Read DICOM files as one series: group by SeriesInstanceUID, keep the largest image series,
    sort by ImagePositionPatient along the slice normal (InstanceNumber when positions are
    missing), apply RescaleSlope/Intercept. SEG objects and non-DICOM files are listed in meta."""
    files = [Path(f) for f in files]
    source = Path(source) if source is not None else (files[0].parent if files else Path("."))
    headers: dict[str, list[tuple[Path, Any]]] = {}
    seg_files: list[str] = []
    skipped: list[str] = []
    for file in files:
        try:
            ds = _dcmread(file, header_only=True)
        except ImageReadError as exc:
            skipped.append(f"{file.name}: {exc.reason}")
            continue
        if _is_seg(ds):
            seg_files.append(str(file))
            continue
        if "SeriesInstanceUID" not in ds and "Rows" not in ds:
            skipped.append(f"{file.name}: DICOM without an image (e.g. a report or DICOMDIR)")
            continue
        headers.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if not headers:
        reason = "no readable DICOM image series"
        if seg_files:
            reason += f" (only {len(seg_files)} SEG object(s))"
        raise ImageReadError(source, reason, "; ".join(skipped[:3]) or "choose the folder of the image series")
    series_uid, members = max(headers.items(), key=lambda kv: (
        sum(_frame_count(ds) for _, ds in kv[1]), kv[0]))
    meta_series = [{"series_uid": uid, "files": len(m),
                    "description": str(m[0][1].get("SeriesDescription", "")),
                    "modality": str(m[0][1].get("Modality", ""))} for uid, m in headers.items()]
    if len(members) == 1:
        vol = read_dicom_file(members[0][0])
        vol.source = source
        vol.kind = "dicom"
    else:
        vol = _read_single_frame_series(members, source)
    vol.meta["series"] = meta_series
    vol.meta["seg_files"] = seg_files
    vol.meta["skipped_files"] = skipped
    if len(headers) > 1:
        described = str(members[0][1].get("SeriesDescription", "")).strip()
        vol.meta["note"] = (f"{source.name} holds {len(headers)} series; loaded the largest "
                            f"({repr(described) if described else 'unnamed'}, {vol.n_slices} slices)")
    return vol


def _read_single_frame_series(members: list[tuple[Path, Any]], source: Path) -> Volume:
    claimed = sum(math.prod(_rows_cols(ds)) * _frame_count(ds) for _, ds in members)
    if claimed > MAX_VOLUME_VOXELS:  # each file may be small; together they must fit too
        raise ImageReadError(source, f"the series claims {claimed / 1e9:.1f} billion pixels in {len(members)} "
                             f"files, over the safety limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion",
                             "split the series into smaller folders, or remove files that do not belong to it")
    geoms = [_geometry(ds, 0) for _, ds in members]
    ori = geoms[0][1]
    px = geoms[0][2]
    have_pos = all(g[0] is not None for g in geoms) and ori is not None
    if have_pos:
        order, step, dz = _order_by_position([g[0] for g in geoms], ori)
        dist = [float(np.dot(geoms[i][0], np.cross(ori[:3], ori[3:]))) for i in order]
        dup = [members[order[i]][0].name for i in range(1, len(order)) if abs(dist[i] - dist[i - 1]) < 1e-4]
        if dup:
            raise ImageReadError(source, f"{len(dup)} slice(s) share a position with another slice "
                                 f"(e.g. {dup[0]}): several series or echoes mixed under one series UID",
                                 "split the series into separate folders")
    else:
        order = sorted(range(len(members)), key=lambda i: (int(members[i][1].get("InstanceNumber") or 0),
                                                           natural_key(members[i][0].name)))
        step, dz = None, None
    slices, files, uids = [], [], []
    ref_shape = None
    for i in order:
        file, _ = members[i]
        ds = _dcmread(file)
        frame = _frames_of(ds, file)[0]
        if ref_shape is None:
            ref_shape = frame.shape
            ref_name = file.name
        elif frame.shape != ref_shape:
            raise ImageReadError(file, f"slice shape {frame.shape} differs from {ref_name}'s {ref_shape}",
                                 "a series must have one slice size; remove the odd file")
        slices.append(frame)
        files.append(file)
        uids.append(str(ds.get("SOPInstanceUID", "")))
    dtype = np.result_type(*[s.dtype for s in slices])
    data = np.stack([s.astype(dtype, copy=False) for s in slices])
    first = _dcmread(files[0], header_only=True)
    meta = _dicom_meta(first)
    meta["files"] = [str(f) for f in files]
    meta["sop_instance_uids"] = uids
    if not have_pos:
        meta["note"] = "slices have no ImagePositionPatient; ordered by InstanceNumber"
    spacing = affine = None
    if have_pos:
        positions = [geoms[i][0] for i in order]
        meta["positions"] = [p.tolist() for p in positions]
        if px is not None and dz:
            spacing = (dz, px[0], px[1])
            affine = _affine_lps_to_ras(positions[0], ori[:3], ori[3:], step, px[0], px[1])
    elif px is not None:
        dz = _thickness(first)
        spacing = (dz, px[0], px[1]) if dz else None
    return Volume(data, spacing, source, "dicom", affine=affine, meta=meta)


@dataclass
class DicomSeg:
    """A decoded DICOM SEG: ``labels[z]`` holds segment numbers (0 = background) per slice.

    ``names[k]`` names label ``k`` (``names[0] == 'background'``). ``positions[z]`` (LPS mm) and
    ``source_uids[z]`` (referenced image SOP Instance UIDs) let an importer put each slice on the
    matching slice of its image series.
    """

    labels: np.ndarray
    names: list[str]
    positions: list[list[float] | None]
    source_uids: list[str | None]
    referenced_series_uid: str | None
    segmentation_type: str
    spacing: tuple[float, float, float] | None
    warnings: list[str]


def read_dicom_seg(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Labels ``[Z, H, W]`` uint8 and segment names (index = label value, 0 = 'background').

    Overlapping segments: the higher segment number wins. FRACTIONAL segments count where the
    value is at least half of MaximumFractionalValue.
    """
    seg = read_dicom_seg_full(path)
    return seg.labels, seg.names


def read_dicom_seg_full(path: str | os.PathLike) -> DicomSeg:
    """Like :func:`read_dicom_seg`, plus where each slice lies (for aligning with the image series)."""
    path = Path(path)
    require_file(path)
    ds = _dcmread(path)
    if not _is_seg(ds):
        raise ImageReadError(path, f"not a DICOM SEG (modality {ds.get('Modality', '?')})",
                             "choose the segmentation object, or use read_volume for images")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    segments = ds.get("SegmentSequence") or []
    numbers = [int(s.SegmentNumber) for s in segments]
    if any(n < 1 or n > 255 for n in numbers):
        raise ImageReadError(path, f"segment numbers {numbers} do not fit 1..255", "renumber the segments")
    names = ["background"] + [""] * (max(numbers) if numbers else 0)
    for s in segments:
        names[int(s.SegmentNumber)] = str(s.get("SegmentLabel", "") or f"segment {int(s.SegmentNumber)}")
    for k in range(1, len(names)):
        names[k] = names[k] or f"segment {k}"
    pixels = _pixels(ds, path)
    if pixels.ndim == 2:
        pixels = pixels[None]
    n_frames = pixels.shape[0]
    warnings: list[str] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) and len(per_frame) != n_frames:
        warnings.append(f"header describes {len(per_frame)} frames but the pixel data holds "
                        f"{n_frames}; used the first {min(n_frames, len(per_frame))}")
    if seg_type == "FRACTIONAL":
        max_value = float(ds.get("MaximumFractionalValue") or 255)
        on = pixels >= max_value / 2.0
    elif seg_type == "BINARY":
        on = pixels > 0
    else:
        raise ImageReadError(path, f"unknown SegmentationType '{seg_type}'", "expected BINARY or FRACTIONAL")
    frame_segment, frame_pos, frame_uid = [], [], []
    _, ori, px = _geometry(ds, 0)
    for i in range(n_frames):
        ident = _functional_item(ds, "SegmentIdentificationSequence", i)
        if ident is None:
            if len(numbers) == 1:
                number = numbers[0]
            else:
                raise ImageReadError(path, f"frame {i + 1} has no Segment Identification",
                                     "the SEG is incomplete; re-export it")
        else:
            number = int(ident.ReferencedSegmentNumber)
        if number not in numbers:
            raise ImageReadError(path, f"frame {i + 1} refers to segment {number}, which is not in "
                                 f"the SegmentSequence {numbers}", "re-export the SEG")
        frame_segment.append(number)
        item = _functional_item(ds, "PlanePositionSequence", i) if len(per_frame) > i else None
        pos = item.get("ImagePositionPatient") if item is not None else None
        frame_pos.append(tuple(round(float(v), 4) for v in pos) if pos is not None else None)
        frame_uid.append(_frame_source_uid(ds, i) if len(per_frame) > i else None)
    # one output slice per distinct position (segments of one slice share it)
    key_of: list[Any]
    if all(p is not None for p in frame_pos):
        normal = np.cross(ori[:3], ori[3:]) if ori is not None else np.array([0.0, 0.0, 1.0])
        keys = sorted(set(frame_pos), key=lambda p: (float(np.dot(p, normal)), p))
        key_of = frame_pos
    elif all(frame_uid):
        keys = list(dict.fromkeys(frame_uid))
        key_of = frame_uid
    elif len(numbers) == 1:  # one segment: frame k is slice k
        keys = key_of = list(range(n_frames))
    else:
        raise ImageReadError(path, "frames carry neither positions nor source image references",
                             "cannot tell which slice each frame belongs to; re-export the SEG")
    index = {k: z for z, k in enumerate(keys)}
    labels = np.zeros((len(keys),) + pixels.shape[1:3], dtype=np.uint8)
    for i in sorted(range(n_frames), key=lambda i: frame_segment[i]):  # higher number wins
        labels[index[key_of[i]]][on[i]] = frame_segment[i]
    positions: list[list[float] | None] = []
    uids: list[str | None] = []
    for k in keys:
        first = key_of.index(k)
        positions.append(list(frame_pos[first]) if frame_pos[first] is not None else None)
        uids.append(frame_uid[first])
    ref_series = None
    refs = ds.get("ReferencedSeriesSequence")
    if refs:
        ref_series = str(refs[0].get("SeriesInstanceUID", "")) or None
    dz = _thickness(ds)
    spacing = (dz, px[0], px[1]) if dz and px else None
    return DicomSeg(labels, names, positions, uids, ref_series, seg_type, spacing, warnings)


def _frame_source_uid(ds: Any, frame: int) -> str | None:
    item = _functional_item(ds, "DerivationImageSequence", frame)
    if item is None:
        return None
    src = item.get("SourceImageSequence")
    if not src:
        return None
    uid = src[0].get("ReferencedSOPInstanceUID")
    return str(uid) if uid else None
