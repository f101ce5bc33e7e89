"""DICOM import failures name the series as the user knows it (its SeriesDescription and folder), say
what is missing and what to do — never a raw SeriesInstanceUID or a bare "." for the folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medseg_gui.cli import main
from medseg_gui.core.data.import_output import DatasetImportError
from medseg_gui.core.data.volume_import import import_volumes

from dicom_fixtures import make_ct_series, make_seg

UID = "1.2.826.0.1.3680043.9.7777.424242"
RAW_UID = re.compile(r"\d+(\.\d+){4,}")  # a dotted DICOM UID


def _describe(folder: Path, description: str) -> None:
    import pydicom

    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.SeriesDescription = description
        ds.save_as(f)


def _no_uid_no_dot(text: str) -> None:
    assert not RAW_UID.search(text), text
    assert "(.:" not in text and " .:" not in text and not text.startswith(".:"), text


def test_a_series_without_its_segmentation_is_named_by_description_and_folder(tmp_path, capsys):
    src = tmp_path / "study"
    make_ct_series(src, [np.zeros((16, 24), np.int16)] * 2, [0.0, 2.0], UID)  # directly in the folder
    _describe(src, "AX T2 liver")
    with pytest.raises(DatasetImportError) as err:
        import_volumes(src, tmp_path / "out", kind="dicom")
    message = str(err.value)
    assert f"series 'AX T2 liver' (number 1) in {src}" in message
    assert "no segmentation (DICOM SEG)" in message and "add its SEG" in message
    _no_uid_no_dot(message)
    # the command line: the same words, one line, no traceback
    assert main(["data", "import", "--from", "dicom", str(src), str(tmp_path / "out2")]) == 2
    err_text = capsys.readouterr().err
    assert "'AX T2 liver'" in err_text and "Traceback" not in err_text
    _no_uid_no_dot(err_text)


def test_skipped_series_and_orphan_segmentations_say_what_to_do(tmp_path):
    src = tmp_path / "dicom"
    uids = make_ct_series(src / "P1" / "ct", [np.zeros((16, 24), np.int16)] * 2, [0.0, 2.0], UID, patient_id="P1")
    _describe(src / "P1" / "ct", "CT abdomen")
    make_seg(src / "P1" / "seg.dcm", [(1, 0.0, np.ones((16, 24), bool))], ["Liver"], series_uid=UID,
             source_uids=[uids[0]])
    make_seg(src / "P1" / "seg_again.dcm", [(1, 0.0, np.ones((16, 24), bool))], ["Liver"], series_uid=UID)
    make_ct_series(src / "P2" / "mr", [np.zeros((16, 24), np.int16)], [0.0], UID + "1")
    _describe(src / "P2" / "mr", "AX T1")
    (src / "P3").mkdir()
    make_seg(src / "P3" / "seg.dcm", [(1, 0.0, np.ones((16, 24), bool))], ["Liver"], series_uid=UID + "9")
    summary = import_volumes(src, tmp_path / "out", kind="dicom")
    assert len(summary.skipped) == 2 and len(summary.warnings) >= 1
    (lonely,) = [s for s in summary.skipped if "AX T1" in s]
    assert lonely.startswith("image series 'AX T1' (number 1) in P2/mr:") and "add its SEG" in lonely
    (orphan,) = [s for s in summary.skipped if s.startswith("P3/seg.dcm")]
    assert "not in" in orphan and "copy that series into the folder" in orphan
    (second,) = [w for w in summary.warnings if "second segmentation" in w]
    assert "series 'CT abdomen' (number 1) in P1/ct" in second and "P1/seg.dcm was used" in second
    for text in (*summary.skipped, *summary.warnings):
        _no_uid_no_dot(text)


def test_a_segmentation_drawn_on_another_series_names_the_image_series(tmp_path):
    make_ct_series(tmp_path / "ct", [np.zeros((16, 24), np.int16)] * 2, [0.0, 2.0], UID)
    _describe(tmp_path / "ct", "CT chest")
    make_seg(tmp_path / "seg.dcm", [(1, 50.0, np.ones((16, 24), bool))], ["Liver"], series_uid=UID)
    with pytest.raises(DatasetImportError, match=r"matches no slice of image series 'CT chest' \(number 1\) in "
                                                 r".*ct — pair the SEG with the series it was drawn on"):
        import_volumes(tmp_path / "ct", tmp_path / "out", kind="dicom", label=tmp_path / "seg.dcm")
    make_seg(tmp_path / "small.dcm", [(1, 0.0, np.ones((8, 8), bool))], ["Liver"])
    with pytest.raises(DatasetImportError, match=r"but image series 'CT chest' .* the SEG was drawn on another"):
        import_volumes(tmp_path / "ct", tmp_path / "out", kind="dicom", label=tmp_path / "small.dcm")
