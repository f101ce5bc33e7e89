"""What every image reader in this floor shares: the :class:`Volume` it returns, the one error it raises,
the file types it knows, and the size limit a volume may claim.

Kept apart from the readers so ``images``, ``dicom``, ``nifti``, ``window`` and ``write`` all depend on
this small module and never on each other's internals.

Orientation contract: a slice ``data[z]`` is shown with row 0 at the top and column 0 at the left.
DICOM pixel data already follows the radiological convention (axial: anterior up, patient's right on
the left); NIfTI volumes are brought to the same convention (see ``nifti``), so one series converted to
NIfTI looks the same as its DICOM. ``Volume.affine`` maps a ``(z, y, x, 1)`` index of ``data`` to RAS+
millimetres, whatever the source.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

#: Largest volume read (voxels, all frames; NIfTI and DICOM): ~8 GB as float32, far above any CT or MR series.
MAX_VOLUME_VOXELS = 2**31


class ImageReadError(ValueError):
    """A file could not be read as an image/volume. ``str()`` names the file, the problem and a fix."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        self.hint = hint
        message = f"{self.path}: {reason}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


@dataclass
class Volume:
    """A stack of 2D slices with its geometry.

    ``data`` is ``[Z, H, W]`` (grey) or ``[Z, H, W, 3]`` (RGB), in the source's own dtype (DICOM
    after RescaleSlope/Intercept). ``spacing`` is ``(z, y, x)`` in mm when the format records it.
    ``affine`` (4x4) maps ``(z, y, x, 1)`` indices of ``data`` to RAS+ mm when known.
    ``meta`` holds what the viewer may show: ``modality``, ``window`` (centre, width),
    ``rescale_applied``, ``series_uid``, ``note`` (e.g. which of several series was loaded), and
    format-specific keys used to write a mask back into the source's grid.
    """

    data: np.ndarray
    spacing: tuple[float, float, float] | None
    source: Path
    kind: str  # 'image' | 'dicom' | 'nifti' | 'folder'
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.data.shape[0])

    @property
    def slice_shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def is_rgb(self) -> bool:
        return self.data.ndim == 4


def file_suffix(path: Path) -> str:
    """The lower-case suffix that names a file's type; ``.nii.gz`` counts as one suffix."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``slice_2`` before ``slice_10`` (how people number slices)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]
