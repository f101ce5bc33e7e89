"""The Open dialog's filter offers every file type the readers know, in Qt's filter syntax."""

from __future__ import annotations

import re

from medseg_gui.core.imaging.volume import DICOM_SUFFIXES, NIFTI_SUFFIXES, SUPPORTED_SUFFIXES
from medseg_gui.gui.viewer.open_filter import OPEN_FILE_FILTER


def test_open_filter_lists_every_supported_type_and_all_files():
    entries = OPEN_FILE_FILTER.split(";;")
    parsed = [re.fullmatch(r"([^()]+) \(([^()]+)\)", e) for e in entries]
    assert all(parsed), entries  # "Label (*.a *.b)" each
    first = parsed[0].group(2).split()
    assert first == ["*" + s for s in SUPPORTED_SUFFIXES]
    assert "*.nii.gz" in first and "*.dcm" in first
    by_label = {m.group(1): m.group(2).split() for m in parsed}
    assert by_label["DICOM"] == ["*" + s for s in DICOM_SUFFIXES]
    assert by_label["NIfTI"] == ["*" + s for s in NIFTI_SUFFIXES]
    assert entries[-1] == "All files (*)"  # extension-less DICOM files stay reachable
