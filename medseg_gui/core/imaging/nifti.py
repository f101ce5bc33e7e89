"""NIfTI volumes (``.nii``, ``.nii.gz``) into a :class:`~medseg_gui.core.imaging.volume.Volume` shown
the way its DICOM would be: the image is brought to canonical RAS, then both in-plane axes are flipped
(rows run anterior to posterior, columns right to left). ``meta`` keeps the source affine and shape so
``write.write_nifti_like`` can put a mask back into the file's own grid. nibabel is imported inside
the function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.imaging.volume import MAX_VOLUME_VOXELS, ImageReadError, Volume


def read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        voxels = int(np.prod([int(d) for d in img.shape], dtype=object)) if img.shape else 0
        if voxels > MAX_VOLUME_VOXELS:  # a small .nii.gz may claim a gigantic volume
            raise ImageReadError(path, f"volume claims {' x '.join(str(int(d)) for d in img.shape)} voxels, over "
                                 f"the safety limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion",
                                 "crop or resample the volume, or remove it")
        canonical = nib.as_closest_canonical(img)
        data = np.asanyarray(canonical.dataobj)
    except ImageReadError:
        raise
    except Exception as exc:  # nibabel raises several types for corrupt/truncated files
        raise ImageReadError(path, f"unreadable or truncated NIfTI ({type(exc).__name__}: {exc})",
                             "re-copy or re-export the file") from None
    meta: dict[str, Any] = {"modality": None, "source_affine": np.asarray(img.affine, dtype=float),
                            "source_shape": tuple(int(s) for s in img.shape)}
    if data.dtype.names is not None:
        raise ImageReadError(path, "structured (e.g. RGB) NIfTI data is not supported",
                             "save a scalar volume")
    if data.ndim == 2:
        data = data[:, :, None]
    elif data.ndim == 4:
        meta["note"] = f"4D volume with {data.shape[3]} frames; loaded frame 0"
        meta["frames"] = int(data.shape[3])
        data = data[..., 0]
    elif data.ndim > 4 or data.ndim < 2:
        raise ImageReadError(path, f"{data.ndim}D NIfTI data of shape {data.shape} is not a 3D volume",
                             "save a 2D, 3D or 4D (time) volume")
    slope = img.dataobj.slope if hasattr(img.dataobj, "slope") else 1.0
    inter = img.dataobj.inter if hasattr(img.dataobj, "inter") else 0.0
    meta["rescale_applied"] = bool(slope not in (1.0, None) or inter not in (0.0, None))
    # canonical (x=R, y=A, z=S) -> (z, y, x) with rows running anterior->posterior and columns
    # right->left, the radiological display DICOM uses.
    zyx = np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))
    if not zyx.dtype.isnative:  # big-endian Analyze-era files: native order for numpy/torch/Qt
        zyx = zyx.astype(zyx.dtype.newbyteorder("="))
    nx, ny, _ = data.shape
    to_canonical = np.array([[0, 0, -1, nx - 1],   # x_c = nx-1-col
                             [0, -1, 0, ny - 1],   # y_c = ny-1-row
                             [1, 0, 0, 0],         # z_c = z
                             [0, 0, 0, 1]], dtype=float)
    affine = np.asarray(canonical.affine, dtype=float) @ to_canonical
    zooms = canonical.header.get_zooms()[:3]
    spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0])) if len(zooms) == 3 else None
    return Volume(zyx, spacing, path, "nifti", affine=affine, meta=meta)
