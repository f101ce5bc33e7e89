"""One door for every format: ``read_volume`` takes an image, a folder of slices, a DICOM file or series
folder, or a NIfTI file, and returns a :class:`~medseg_gui.core.imaging.volume.Volume` whose ``data``
is always ``[Z, H, W]`` (or ``[Z, H, W, 3]`` for colour). The format modules do the reading; this one
only chooses between them, so it is the only module here that imports them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medseg_gui.core.imaging.dicom import has_dicom_magic, read_dicom_file, read_dicom_series
from medseg_gui.core.imaging.images import read_image, read_tiff_pages, require_file
from medseg_gui.core.imaging.nifti import read_nifti
from medseg_gui.core.imaging.volume import (DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, SUPPORTED_SUFFIXES,
                                            ImageReadError, Volume, file_suffix, natural_key)


def is_supported(path: str | os.PathLike) -> bool:
    """Whether ``read_volume`` can try this path: a known extension, a DICOM file, or a folder."""
    path = Path(path)
    if path.is_dir():
        return True
    if file_suffix(path) in SUPPORTED_SUFFIXES:
        return True
    return path.is_file() and has_dicom_magic(path)


def read_volume(path: str | os.PathLike) -> Volume:
    """Read an image, a folder of slices, a DICOM file/series or a NIfTI file as a :class:`Volume`.

    A folder is a DICOM series if it holds DICOM files (the largest series wins if there are
    several, and ``meta['note']`` says so), else a stack of 2D slices in natural name order.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "not found", "check the path")
    if path.is_dir():
        return _read_folder(path)
    require_file(path)
    suffix = file_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(path)
    if suffix in DICOM_SUFFIXES or has_dicom_magic(path):
        return read_dicom_file(path)
    if suffix in (".tif", ".tiff"):
        pages = read_tiff_pages(path)
        return _stack_slices(path, pages, [path] * len(pages), kind="image")
    if suffix in IMAGE_SUFFIXES:
        return Volume(read_image(path)[None], None, path, "image")
    raise ImageReadError(path, f"unsupported file type '{suffix or '(none)'}'",
                         f"supported: {', '.join(SUPPORTED_SUFFIXES)} and DICOM/slice folders")


def _stack_slices(source: Path, slices: list[np.ndarray], files: list[Path], kind: str) -> Volume:
    first = slices[0]
    for arr, file in zip(slices, files):
        if arr.shape != first.shape:
            raise ImageReadError(file, f"slice shape {arr.shape} differs from the first slice's "
                                 f"{first.shape} ({files[0].name})",
                                 "all slices of a volume must have the same size and channels")
    dtype = np.result_type(*[s.dtype for s in slices])
    data = np.stack([s.astype(dtype, copy=False) for s in slices])
    return Volume(data, None, source, kind, meta={"files": [str(f) for f in files]})


def _read_folder(folder: Path) -> Volume:
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise ImageReadError(folder, "folder is empty", "choose a folder of slices or a DICOM series")
    dicom = [p for p in files if file_suffix(p) in DICOM_SUFFIXES or has_dicom_magic(p)]
    if dicom:
        return read_dicom_series(dicom, source=folder)
    images = [p for p in files if file_suffix(p) in IMAGE_SUFFIXES]
    if not images:
        raise ImageReadError(folder, "no images, DICOM or NIfTI files found in the folder",
                             f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    slices = [read_image(p) for p in images]
    return _stack_slices(folder, slices, images, kind="folder")
