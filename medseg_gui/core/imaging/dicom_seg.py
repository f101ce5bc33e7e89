"""Writing a predicted mask as a DICOM Segmentation (SEG) object that references its source series.

Why DICOM SEG: a clinician can send it back to the PACS next to the scan, or drop both into 3D Slicer,
and the mask lands on the right slices of the right study. NIfTI loses the study/series identity and
PNGs lose the geometry; a SEG keeps both. highdicom (MIT) builds the object, so the dozens of required
modules (Frame of Reference, functional groups, derivation references, segment codes) follow the
standard as highdicom's authors and the DICOM validators read it, not our guess of it.

What the SEG holds:

* the source images' patient and study (same StudyInstanceUID), a new series of its own (SEG objects
  always start one), the source FrameOfReferenceUID, and per frame the source SOP Instance it was
  derived from, with the source's plane position and pixel spacing;
* one segment per foreground class (``class_names[1:]``, index = class id), labelled with the model's
  class name and marked AUTOMATIC, made by this program; classes the mask never shows are still
  described (so segment numbers always equal class ids) but have no frames;
* BINARY segmentation type (one bit per pixel; a prediction is a label map, not a probability).

Reading SEG objects back stays in the image readers (``read_dicom_seg``), which also accept hand-made
and slightly broken files from other tools.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui import __version__
from medseg_gui.core.atomic import atomic_write
from medseg_gui.core.output_guard import check_file_target

#: What the SEG says made it (DICOM Manufacturer / ManufacturerModelName).
MANUFACTURER = "medseg-gui"
MODEL_NAME = "SegFormer segmentation"


class DicomSegError(ValueError):
    """The mask cannot be written as a SEG of these source images; the message says why and what to do."""


def _version() -> str:
    return str(__version__)


def _segment_descriptions(class_names: Sequence[str], algorithm: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    family = codes.cid7162.ArtificialIntelligence
    algo = hd.AlgorithmIdentificationSequence(name=algorithm[:64], family=family, version=_version()[:64])
    out = []
    for number, name in enumerate(class_names[1:], start=1):
        label = (str(name).strip() or f"class {number}")[:64]
        # The model only knows class names, not what they are anatomically: "Tissue" is the generic
        # property SNOMED code viewers accept; the label carries the meaning.
        out.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo))
    return out


def _check_inputs(source_datasets: Sequence[Any], mask: np.ndarray, class_names: Sequence[str]) -> None:
    if not source_datasets:
        raise DicomSegError("a DICOM SEG needs the source DICOM images — open the scan as a DICOM series")
    if len(class_names) < 2:
        raise DicomSegError("a DICOM SEG needs at least one foreground class besides the background")
    if mask.ndim != 3:
        raise DicomSegError(f"expected a label volume [slices, rows, columns], got shape {mask.shape}")
    frames = sum(max(1, int(ds.get("NumberOfFrames") or 1)) for ds in source_datasets)
    rows, cols = int(source_datasets[0].Rows), int(source_datasets[0].Columns)
    if mask.shape != (frames, rows, cols):
        raise DicomSegError(f"the mask's shape {mask.shape} does not match the source series "
                            f"({frames} slices of {rows} x {cols}) — predict on this series again")
    top = int(mask.max()) if mask.size else 0
    if mask.min() < 0 or top >= len(class_names):
        raise DicomSegError(f"the mask holds class {top}, but the model has only {len(class_names)} classes "
                            f"({', '.join(map(str, class_names))})")


def build_dicom_seg(source_datasets: Sequence[Any], mask_volume: np.ndarray, class_names: Sequence[str], *,
                    series_description: str = "medseg-gui prediction", algorithm: str = "medseg-gui SegFormer",
                    series_number: int = 300) -> Any:
    """The SEG dataset (not yet written) for ``mask_volume`` ``[Z, H, W]`` of class ids over
    ``source_datasets``: the source images in the mask's slice order (``Volume.meta['files']`` order),
    one dataset per file — or one multi-frame dataset — read with or without pixel data."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    mask = np.asarray(mask_volume)
    if not np.issubdtype(mask.dtype, np.integer):
        raise DicomSegError(f"expected integer class ids in the mask, got {mask.dtype}")
    sources = list(source_datasets)
    _check_inputs(sources, mask, class_names)
    dtype = np.uint8 if len(class_names) <= 256 else np.uint16
    pixel_array = mask.astype(dtype)  # a multi-frame source: frames in its own order
    empty = not pixel_array.any()
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(class_names, algorithm),
            series_instance_uid=generate_uid(), series_number=series_number,
            sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
            software_versions=_version(), device_serial_number="none",
            series_description=series_description[:64],
            content_label="PREDICTION", content_description=series_description[:64],
            # an all-background mask still needs one frame to be a valid object
            omit_empty_frames=not empty,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise DicomSegError(f"the source images cannot carry a DICOM SEG ({exc}) — export NIfTI instead") from None
    return seg


def write_dicom_seg(source_datasets: Sequence[Any], mask_volume: np.ndarray, class_names: Sequence[str],
                    out_path: str | os.PathLike, *, overwrite: bool = False,
                    series_description: str = "medseg-gui prediction") -> Path:
    """Write ``mask_volume`` as a DICOM SEG at ``out_path`` (atomic), referencing ``source_datasets``.

    An existing file is replaced only with ``overwrite`` (``--overwrite``, or the viewer's save dialog
    after the user confirmed): a SEG a radiologist drew must survive a prediction run.
    """
    out = Path(out_path)
    check_file_target(out, replace=overwrite, flag="--overwrite")
    seg = build_dicom_seg(source_datasets, mask_volume, class_names, series_description=series_description)
    return atomic_write(out, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def dicom_seg_problem(volume: Any) -> str:
    """Why ``volume`` cannot carry a DICOM SEG export ('' when it can): the SEG refers to source files,
    one per slice, so the input must be a DICOM series (or a single DICOM image) we read ourselves.
    Multi-frame files are left out: their frames were re-ordered by position on reading."""
    files = volume.meta.get("files") or []
    if volume.kind != "dicom":
        return f"{volume.source}: DICOM SEG needs a DICOM input, not {volume.kind} — export NIfTI or PNG instead"
    if len(files) != volume.n_slices:
        return (f"{volume.source}: DICOM SEG export is for series of single-frame images; this is a multi-frame "
                "file — export NIfTI instead")
    return ""


def read_source_datasets(files: Sequence[str | os.PathLike]) -> list[Any]:
    """The headers of the source files (no pixel data: the SEG needs only their identity and geometry)."""
    import pydicom

    return [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
