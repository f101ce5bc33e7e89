"""The Open dialog's file-type filter, in Qt's ``"Label (*.a *.b);;Label (*.c)"`` form.

The file types come from ``core.imaging.volume`` (what the readers know); the labels and the Qt
syntax are interface, so they live here.
"""

from __future__ import annotations

from collections.abc import Iterable

from medseg_gui.core.imaging.volume import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, SUPPORTED_SUFFIXES


def _entry(label: str, suffixes: Iterable[str]) -> str:
    return f"{label} ({' '.join('*' + s for s in suffixes)})"


#: ``QFileDialog.getOpenFileName(..., filter=OPEN_FILE_FILTER)``. DICOM files often have no extension,
#: hence the "All files" entry.
OPEN_FILE_FILTER = ";;".join([
    _entry("Images and volumes", SUPPORTED_SUFFIXES),
    _entry("2D images", IMAGE_SUFFIXES),
    _entry("DICOM", DICOM_SUFFIXES),
    _entry("NIfTI", NIFTI_SUFFIXES),
    "All files (*)",
])
