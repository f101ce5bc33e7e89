"""Writing predictions: mask PNGs (class ids), NIfTI label volumes, overlay PNGs — all atomic.

Shared by the viewer's Export buttons and ``medseg predict`` so a mask exported either way is the
same file. Mask PNGs hold raw class ids (0, 1, 2, …: they look black in a photo viewer, and that is
what training and other tools read); overlay PNGs are for people.

An existing file is never replaced unless the caller passes ``overwrite=True`` (``--overwrite``, or
the viewer's save dialog after the user confirmed): a ground-truth ``case1_mask.png`` beside the
outputs must survive a prediction run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medseg_gui.core.atomic import atomic_write
from medseg_gui.core.imaging.dicom_seg import dicom_seg_problem, read_source_datasets, write_dicom_seg
from medseg_gui.core.imaging.write import write_mask_png, write_nifti_like
from medseg_gui.core.output_guard import check_file_target
from medseg_gui.core.imaging.overlay import FILLED, blend, label_overlay

if TYPE_CHECKING:  # pragma: no cover
    from medseg_gui.core.imaging.volume import Volume


@dataclass
class ExportResult:
    """What one export wrote (paths), for the CLI summary and the viewer's status line."""

    masks: list[Path] = field(default_factory=list)
    nifti: Path | None = None
    overlays: list[Path] = field(default_factory=list)
    dicom_seg: Path | None = None


#: Mask formats: ``auto`` = NIfTI where the source has geometry, PNG otherwise; ``dicom-seg`` = one DICOM
#: SEG object referring to the source series (DICOM inputs only).
MASK_FORMATS = ("auto", "dicom-seg")


def safe_stem(path: str | os.PathLike) -> str:
    """A file-name stem for outputs derived from an input name (``scan.nii.gz`` → ``scan``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def export_mask_png(path: str | os.PathLike, labels2d: np.ndarray, *, overwrite: bool = False) -> Path:
    """A 2D mask as a single-channel PNG of class ids."""
    check_file_target(Path(path), replace=overwrite, flag="--overwrite")
    return write_mask_png(path, labels2d)


def export_mask_nifti(path: str | os.PathLike, labels_zyx: np.ndarray, reference: "Volume", *,
                      overwrite: bool = False) -> Path:
    """A label volume as NIfTI in the source volume's space (same grid and affine)."""
    check_file_target(Path(path), replace=overwrite, flag="--overwrite")
    return write_nifti_like(path, labels_zyx, reference)


def export_mask_dicom_seg(path: str | os.PathLike, labels_zyx: np.ndarray, reference: "Volume",
                          class_names: Sequence[str], *, overwrite: bool = False) -> Path:
    """A label volume as a DICOM SEG referring to the DICOM series ``reference`` was read from."""
    problem = dicom_seg_problem(reference)
    if problem:
        raise ValueError(problem)
    return write_dicom_seg(read_source_datasets(reference.meta["files"]), labels_zyx, class_names, path,
                           overwrite=overwrite)


def write_rgb_png(path: str | os.PathLike, rgb: np.ndarray, *, overwrite: bool = False) -> Path:
    from PIL import Image

    arr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB(A) image [H, W, 3|4], got shape {arr.shape}")
    check_file_target(Path(path), replace=overwrite, flag="--overwrite")
    img = Image.fromarray(arr)
    return atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def overlay_picture(image_u8: np.ndarray, labels2d: np.ndarray, colours: Sequence[str], opacity: float = 0.5,
                    mode: str = FILLED, visible: Sequence[bool] | None = None) -> np.ndarray:
    """The displayed slice with its mask blended in, as RGB uint8."""
    return blend(image_u8, label_overlay(labels2d, colours, opacity, mode, visible))


def export_overlay_png(path: str | os.PathLike, image_u8: np.ndarray, labels2d: np.ndarray,
                       colours: Sequence[str], opacity: float = 0.5, mode: str = FILLED,
                       visible: Sequence[bool] | None = None, *, overwrite: bool = False) -> Path:
    return write_rgb_png(path, overlay_picture(image_u8, labels2d, colours, opacity, mode, visible),
                         overwrite=overwrite)


def nifti_possible(volume: "Volume") -> bool:
    """NIfTI needs geometry: a NIfTI or DICOM source (a PNG stack has no affine)."""
    return volume.affine is not None or (volume.kind == "nifti" and "source_affine" in volume.meta)


def planned_outputs(out_dir: str | os.PathLike, stem: str, volume: "Volume", *, overlay: bool = False,
                    fmt: str = "auto") -> list[Path]:
    """Every file :func:`export_volume` would write for ``volume`` under ``stem`` — so a caller can check
    them all (existing files, names another input already took) before anything is written.
    ``fmt='dicom-seg'`` on a volume that cannot carry one raises ValueError saying why."""
    out = Path(out_dir)
    z = volume.n_slices
    if fmt == "dicom-seg":
        problem = dicom_seg_problem(volume)
        if problem:
            raise ValueError(problem)
        paths = [out / f"{stem}_seg.dcm"]
    elif nifti_possible(volume):
        paths = [out / f"{stem}_mask.nii.gz"]
    else:
        paths = [out / (f"{stem}_mask.png" if z == 1 else f"{stem}_{i + 1:04d}_mask.png") for i in range(z)]
    if overlay:
        paths += [out / (f"{stem}_overlay.png" if z == 1 else f"{stem}_overlay/{stem}_{i + 1:04d}_overlay.png")
                  for i in range(z)]
    return paths


def export_volume(out_dir: str | os.PathLike, stem: str, volume: "Volume", labels_zyx: np.ndarray,
                  display_u8: np.ndarray | None = None, colours: Sequence[str] = (), *,
                  overlay: bool = False, opacity: float = 0.5, mode: str = FILLED,
                  overwrite: bool = False, fmt: str = "auto", class_names: Sequence[str] = ()) -> ExportResult:
    """Masks of a whole input: NIfTI when the source has geometry, PNG per slice otherwise (and for
    single 2D images), or one DICOM SEG with ``fmt='dicom-seg'`` (segments named by ``class_names``),
    plus one overlay PNG per slice when ``overlay``.

    ``display_u8`` is the uint8 picture the overlays are drawn on (``[Z, H, W(, 3)]``). Every output is
    checked before the first is written, so a refused input leaves no partial set behind.
    """
    out = Path(out_dir)
    result = ExportResult()
    labels = np.asarray(labels_zyx)
    z = labels.shape[0]
    if overlay and display_u8 is None:
        raise ValueError("overlay export needs the display image (display_u8)")
    for path in planned_outputs(out, stem, volume, overlay=overlay, fmt=fmt):
        check_file_target(path, replace=overwrite, flag="--overwrite")
    if fmt == "dicom-seg":
        result.dicom_seg = export_mask_dicom_seg(out / f"{stem}_seg.dcm", labels, volume, class_names,
                                                 overwrite=overwrite)
    elif nifti_possible(volume):
        result.nifti = export_mask_nifti(out / f"{stem}_mask.nii.gz", labels, volume, overwrite=overwrite)
    else:
        for i in range(z):
            name = f"{stem}_mask.png" if z == 1 else f"{stem}_{i + 1:04d}_mask.png"
            result.masks.append(export_mask_png(out / name, labels[i], overwrite=overwrite))
    if overlay:
        assert display_u8 is not None
        for i in range(z):
            name = f"{stem}_overlay.png" if z == 1 else f"{stem}_overlay/{stem}_{i + 1:04d}_overlay.png"
            result.overlays.append(export_overlay_png(out / name, display_u8[i], labels[i], colours, opacity, mode,
                                                      overwrite=overwrite))
    return result
