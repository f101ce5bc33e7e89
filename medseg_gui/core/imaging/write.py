"""Masks out: a PNG per slice, or a NIfTI volume in the source's own space. Every write is atomic
(temp file + rename), so an export never leaves half a file behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medseg_gui.core.atomic import atomic_write
from medseg_gui.core.imaging.volume import Volume


def write_mask_png(path: str | os.PathLike, labels2d: np.ndarray) -> Path:
    """Write class ids as a single-channel 8-bit PNG, atomically (temp file + rename)."""
    from PIL import Image

    path = Path(path)
    arr = np.asarray(labels2d)
    if arr.ndim != 2:
        raise ValueError(f"{path}: a mask must be 2D [H, W], got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        if arr.dtype.kind == "f" and np.all(np.mod(arr[np.isfinite(arr)], 1) == 0) and np.isfinite(arr).all():
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{path}: mask values must be integer class ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{path}: mask values {int(arr.min())}..{int(arr.max())} do not fit 0..255 "
                         "(one byte per class id)")
    img = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)))  # 2D uint8 -> mode 'L'
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_nifti_like(path: str | os.PathLike, labels_zyx: np.ndarray, reference: Volume) -> Path:
    """Write a label volume as NIfTI in the reference's space, atomically.

    A NIfTI reference gets the mask in its own voxel grid, orientation and affine (so the pair
    lines up voxel for voxel in any tool, nnU-Net included). Any other reference with a known
    ``affine`` (e.g. a DICOM series) gets a NIfTI whose affine places the ``(z, y, x)`` grid in
    the same RAS space.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    labels = np.asarray(labels_zyx)
    if labels.shape != reference.data.shape[:3]:
        raise ValueError(f"{path}: label volume shape {labels.shape} does not match the reference "
                         f"{reference.source} shape {reference.data.shape[:3]} (z, y, x)")
    if labels.dtype.kind not in "biu" or (labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"{path}: labels must be integer class ids in 0..255")
    labels = labels.astype(np.uint8)
    if reference.kind == "nifti" and "source_affine" in reference.meta:
        canonical = np.transpose(labels, (2, 1, 0))[::-1, ::-1, :]
        src_affine = np.asarray(reference.meta["source_affine"], dtype=float)
        src_ornt = nib.orientations.io_orientation(src_affine)
        ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
        back = nib.orientations.ornt_transform(ras, src_ornt)
        data_xyz = nib.orientations.apply_orientation(canonical, back)
        affine = src_affine
        src_shape = tuple(reference.meta.get("source_shape", ()))[:3]
        if src_shape and tuple(data_xyz.shape) != src_shape:
            raise ValueError(f"{path}: internal orientation error: {data_xyz.shape} vs {src_shape}")
    elif reference.affine is not None:
        data_xyz = np.transpose(labels, (2, 1, 0))
        perm = np.zeros((4, 4))
        perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (x, y, z) index -> (z, y, x)
        affine = np.asarray(reference.affine, dtype=float) @ perm
    else:
        raise ValueError(f"{path}: the reference {reference.source} has no spatial geometry; "
                         "save the mask as PNG slices instead")
    img = nib.Nifti1Image(np.ascontiguousarray(data_xyz), affine)
    img.header.set_data_dtype(np.uint8)
    img.header.set_intent("label")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii"

    def _write(tmp: Path) -> None:
        named = tmp.with_name(tmp.name + suffix)  # nibabel picks gzip from the suffix
        try:
            nib.save(img, str(named))
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)

    return atomic_write(path, _write)
