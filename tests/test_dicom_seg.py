"""A predicted mask written as DICOM SEG (core/imaging/dicom_seg.py) refers to its source series and
reads back the same through highdicom and through our own SEG reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicom_fixtures import make_ct_series
from medseg_gui.core.imaging.dicom import read_dicom_seg_full, read_dicom_series
from medseg_gui.core.imaging.dicom_seg import DicomSegError, read_source_datasets, write_dicom_seg
from medseg_gui.core.output_guard import OutputRefused

SERIES = "1.2.826.0.1.3680043.9.7777.6.1"
CLASSES = ["background", "liver", "tumour"]


def _series(tmp_path: Path):
    slices = [np.full((16, 20), 40 * k, np.int16) for k in range(4)]
    make_ct_series(tmp_path / "ct", slices, [10.0, 12.5, 15.0, 17.5], SERIES, xy=(-50.0, -60.0))
    return read_dicom_series(sorted((tmp_path / "ct").iterdir()))


def _mask() -> np.ndarray:
    mask = np.zeros((4, 16, 20), np.uint8)
    mask[1, 2:5, 3:9] = 1
    mask[2, 8:12, 1:4] = 2
    mask[2, 0, 0:3] = 1
    mask[3, 5:7, 5:7] = 2
    return mask


def test_seg_refers_to_the_source_and_reads_back_through_highdicom(tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom

    vol = _series(tmp_path)
    sources = read_source_datasets(vol.meta["files"])
    out = write_dicom_seg(sources, _mask(), CLASSES, tmp_path / "pred.seg.dcm")
    seg = hd.seg.segread(out)
    first = pydicom.dcmread(vol.meta["files"][0], stop_before_pixels=True)
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.PatientID == first.PatientID
    assert seg.SeriesInstanceUID != SERIES  # a SEG is a series of its own
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2]
    assert str(seg.SegmentSequence[0].SegmentAlgorithmType) == "AUTOMATIC"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == set(vol.meta["sop_instance_uids"])
    # pixels: highdicom's label map over the source instances equals the mask on every slice
    labels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=vol.meta["sop_instance_uids"], combine_segments=True, skip_overlap_checks=True)
    assert np.array_equal(labels, _mask())


def test_seg_reads_back_through_our_reader_on_the_right_slices(tmp_path: Path) -> None:
    vol = _series(tmp_path)
    out = write_dicom_seg(read_source_datasets(vol.meta["files"]), _mask(), CLASSES, tmp_path / "pred.dcm")
    seg = read_dicom_seg_full(out)
    assert seg.names == CLASSES
    assert seg.referenced_series_uid == SERIES
    assert seg.segmentation_type == "BINARY"
    uids = vol.meta["sop_instance_uids"]
    # empty frames are left out: slices 1..3 carry foreground
    assert seg.source_uids == uids[1:]
    assert [p[2] for p in seg.positions] == [12.5, 15.0, 17.5]
    assert [p[:2] for p in seg.positions] == [[-50.0, -60.0]] * 3
    assert seg.spacing is not None and seg.spacing[1:] == tuple(vol.spacing[1:])
    assert np.array_equal(seg.labels, _mask()[1:])


def test_all_background_still_writes_a_valid_seg(tmp_path: Path) -> None:
    import highdicom as hd

    vol = _series(tmp_path)
    out = write_dicom_seg(read_source_datasets(vol.meta["files"]), np.zeros((4, 16, 20), np.uint8), CLASSES,
                          tmp_path / "empty.dcm")
    seg = hd.seg.segread(out)
    assert int(seg.NumberOfFrames) >= 1 and not seg.pixel_array.any()


def test_existing_file_is_never_replaced_without_overwrite(tmp_path: Path) -> None:
    vol = _series(tmp_path)
    sources = read_source_datasets(vol.meta["files"])
    target = tmp_path / "radiologist.dcm"
    target.write_bytes(b"drawn by hand")
    with pytest.raises(OutputRefused, match="already exists"):
        write_dicom_seg(sources, _mask(), CLASSES, target)
    assert target.read_bytes() == b"drawn by hand"
    write_dicom_seg(sources, _mask(), CLASSES, target, overwrite=True)
    assert target.read_bytes() != b"drawn by hand"


def test_mismatched_mask_or_classes_are_refused_in_words(tmp_path: Path) -> None:
    vol = _series(tmp_path)
    sources = read_source_datasets(vol.meta["files"])
    with pytest.raises(DicomSegError, match="does not match the source series"):
        write_dicom_seg(sources, np.zeros((3, 16, 20), np.uint8), CLASSES, tmp_path / "a.dcm")
    bad = _mask()
    bad[0, 0, 0] = 5
    with pytest.raises(DicomSegError, match="holds class 5"):
        write_dicom_seg(sources, bad, CLASSES, tmp_path / "b.dcm")
    with pytest.raises(DicomSegError, match="foreground class"):
        write_dicom_seg(sources, _mask(), ["background"], tmp_path / "c.dcm")
    assert not any(tmp_path.glob("*.dcm"))


def test_predict_cli_writes_a_dicom_seg_for_a_series_and_refuses_other_inputs(tmp_path: Path, capsys) -> None:
    import json

    import highdicom as hd

    from medseg_gui.cli import main
    from medseg_gui.core.engine.inference import Predictor
    from viewer_helpers import ramp_image, tiny_bundle, write_png

    bundle = tiny_bundle(tmp_path / "models")
    names = Predictor.from_path(bundle, device="cpu").class_names
    vol = _series(tmp_path)
    png = write_png(tmp_path / "photo.png", ramp_image())
    out = tmp_path / "out"
    code = main(["predict", str(bundle), str(tmp_path / "ct"), str(png), "--out", str(out),
                 "--format", "dicom-seg", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # the PNG cannot carry a DICOM SEG; the series still got one
    assert [e["input"] for e in report["errors"]] == [str(png)]
    assert "DICOM SEG needs a DICOM input" in report["errors"][0]["error"]
    seg_path = Path(report["results"][0]["dicom_seg"])
    assert seg_path == out / "ct_seg.dcm"
    seg = hd.seg.segread(seg_path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == list(names[1:])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES
    assert {u for _, _, u in seg.get_source_image_uids()} == set(vol.meta["sop_instance_uids"])
    before = seg_path.read_bytes()
    assert main(["predict", str(bundle), str(tmp_path / "ct"), "--out", str(out), "--format", "dicom-seg"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert seg_path.read_bytes() == before


def test_viewer_offers_dicom_seg_for_a_dicom_series_and_exports_it(tmp_path: Path, qtbot) -> None:
    pytest.importorskip("pytestqt")
    from medseg_gui.gui.viewer import ViewerWidget
    from viewer_helpers import ramp_image, tiny_bundle, write_png

    vol = _series(tmp_path)
    viewer = ViewerWidget()
    qtbot.addWidget(viewer)
    viewer.show()
    try:
        assert viewer.open_path(str(write_png(tmp_path / "photo.png", ramp_image())))
        assert not viewer.controls.export_seg_button.isVisible()  # a photo has no series to refer to
        assert viewer.open_path(str(tmp_path / "ct"))
        assert viewer.controls.export_seg_button.isVisible()
        assert not viewer.controls.export_seg_button.isEnabled()  # no prediction yet
        with qtbot.waitSignal(viewer.model_loaded, timeout=60000):
            viewer.load_model(tiny_bundle(tmp_path / "models"))
        with qtbot.waitSignal(viewer.prediction_finished, timeout=60000):
            viewer.run_volume()
        qtbot.waitUntil(viewer.controls.export_seg_button.isEnabled, timeout=60000)
        target = tmp_path / "exported_seg.dcm"
        target.write_bytes(b"someone else's")
        assert viewer.export("dicom-seg", target) is None and "already exists" in viewer.last_error
        assert target.read_bytes() == b"someone else's"
        out = viewer.export("dicom-seg", tmp_path / "viewer_seg.dcm")
        assert out is not None
        seg = read_dicom_seg_full(out)
        assert seg.names == list(viewer.doc.class_names)
        uids = vol.meta["sop_instance_uids"]
        for k, uid in enumerate(seg.source_uids):
            assert np.array_equal(seg.labels[k], viewer.doc.labels[uids.index(uid)])
    finally:
        viewer.shutdown()
