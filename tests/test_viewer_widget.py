"""The Viewer page offscreen: real DICOM/NIfTI files, a tiny bundle in a worker thread, export and re-read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from medseg_gui.core.imaging.images import read_image  # noqa: E402
from medseg_gui.core.imaging.read import read_volume  # noqa: E402
from medseg_gui.gui.viewer import ViewerWidget  # noqa: E402
from viewer_helpers import tiny_bundle, write_png  # noqa: E402


def _testdata(name: str) -> str:
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


def _nifti(name: str = "anatomical.nii") -> str:
    from nibabel.testing import data_path

    return os.path.join(data_path, name)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("viewer_models"))


@pytest.fixture
def viewer(qtbot):
    w = ViewerWidget()
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    yield w
    w.shutdown()


def load(viewer, qtbot, bundle) -> None:
    with qtbot.waitSignal(viewer.model_loaded, timeout=60000):
        viewer.load_model(bundle)
    assert viewer.last_error is None


def run(viewer, qtbot, volume: bool = False):
    with qtbot.waitSignal(viewer.prediction_finished, timeout=60000) as sig:
        (viewer.run_volume if volume else viewer.run_slice)()
    return sig.args[0]


def test_ct_dicom_predict_export_and_reread(viewer, qtbot, bundle, tmp_path):
    assert viewer.open_path(_testdata("CT_small.dcm"))
    assert "CT" in viewer.subtitle.text() and "128×128" in viewer.subtitle.text()
    assert viewer.doc.window == (40.0, 400.0) or viewer.doc.volume.meta.get("window")
    assert not viewer.controls.run_slice_button.isEnabled()  # no model yet
    load(viewer, qtbot, bundle)
    assert "b0" in viewer.controls.model_label.text()
    assert [c.text() for c in viewer.controls.legend.checks] == ["stomach", "small_bowel", "large_bowel"]
    pred = run(viewer, qtbot)
    assert pred.labels.shape == (128, 128)
    assert viewer.canvas.main.overlay.isVisible()
    png = viewer.export("png", tmp_path / "ct_mask.png")
    nii = viewer.export("nifti", tmp_path / "ct_mask.nii.gz")
    over = viewer.export("overlay", tmp_path / "ct_overlay.png")
    assert png and nii and over and viewer.last_error is None
    mask = read_image(png)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8 and mask.max() < 4
    np.testing.assert_array_equal(mask, viewer.doc.labels[0])
    vol = read_volume(nii)
    assert vol.data.shape == (1, 128, 128) and set(np.unique(vol.data)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(vol.data[0], viewer.doc.labels[0])
    np.testing.assert_allclose(vol.affine, viewer.doc.volume.affine, atol=1e-3)
    rgb = read_image(over)
    assert rgb.shape == (128, 128, 3)


def test_mr_dicom_auto_window_hover_and_right_drag(viewer, qtbot, bundle):
    assert viewer.open_path(_testdata("MR_small.dcm"))
    assert viewer.doc.volume.slice_shape == (64, 64)
    viewer.apply_preset("Auto (percentile)")
    auto = viewer.doc.window
    assert viewer.controls.width_spin.value() == pytest.approx(auto[1], abs=0.1)
    load(viewer, qtbot, bundle)
    run(viewer, qtbot)
    viewer.canvas.hovered.emit(10, 20)
    text = viewer.readout.text()
    assert "x 10" in text and "y 20" in text and "value" in text and "class" in text and "%" in text
    assert f"value {int(viewer.doc.volume.data[0, 20, 10])}" in text

    class Drag:  # what pyqtgraph hands a ViewBox on a right-drag
        def __init__(self, dx, dy):
            self._pos, self._last = QPointF(100 + dx, 100 + dy), QPointF(100, 100)

        def button(self):
            return Qt.MouseButton.RightButton

        def pos(self):
            return self._pos

        def lastPos(self):  # noqa: N802
            return self._last

        def accept(self):
            self.accepted = True

    view_range = viewer.canvas.main.view.viewRange()
    viewer.canvas.main.view.mouseDragEvent(Drag(60, 0))
    assert viewer.doc.window[1] > auto[1]  # wider
    viewer.canvas.main.view.mouseDragEvent(Drag(0, -40))
    assert viewer.doc.window[0] > auto[0]  # level up
    assert viewer.controls.preset_combo.currentText() != "CT lung"
    assert viewer.canvas.main.view.viewRange() == view_range  # right-drag does not zoom


def test_nifti_volume_slices_keys_volume_run_and_nifti_export(viewer, qtbot, bundle, tmp_path):
    path = _nifti()
    assert viewer.open_path(path)
    n = viewer.doc.n_slices
    assert n > 1 and viewer.slice_slider.maximum() == n - 1 and viewer.slice_slider.isVisible()
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_Home)
    assert viewer.doc.slice_index == 0 and viewer.slice_slider.value() == 0
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_Down)
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_Right)
    assert viewer.doc.slice_index == 2
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_PageDown)
    assert viewer.doc.slice_index == min(12, n - 1)
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_Up)
    qtbot.keyClick(viewer.canvas.graphics, Qt.Key.Key_End)
    assert viewer.doc.slice_index == n - 1 and f"slice {n} / {n}" in viewer.slice_label.text()
    viewer.slice_slider.setValue(3)
    assert viewer.doc.slice_index == 3
    load(viewer, qtbot, bundle)
    assert not viewer.controls.export_nifti_button.isEnabled()
    progress = []
    viewer.controls.progress.valueChanged.connect(progress.append)
    result = run(viewer, qtbot, volume=True)
    assert result.done == n and viewer.doc.predicted.all() and progress
    out = viewer.export("nifti", tmp_path / "anat_mask.nii.gz")
    assert out is not None
    import nibabel as nib

    src, mask = nib.load(path), nib.load(str(out))
    assert mask.shape == src.shape[:3] and np.allclose(mask.affine, src.affine)
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(read_volume(out).data, viewer.doc.labels)


def test_overlay_controls_legend_and_side_by_side(viewer, qtbot, bundle, tmp_path):
    assert viewer.open_path(_testdata("CT_small.dcm"))
    load(viewer, qtbot, bundle)
    run(viewer, qtbot)
    c = viewer.controls
    c.opacity_slider.setValue(80)
    assert viewer.doc.opacity == pytest.approx(0.8) and c.opacity_label.text() == "80%"
    shown = viewer.canvas.main.overlay.image
    assert shown[..., 3].max() == round(0.8 * 255)
    c.mode_combo.setCurrentIndex(c.mode_combo.findData("contour"))
    contour = viewer.canvas.main.overlay.image
    assert viewer.doc.mode == "contour" and (contour[..., 3] > 0).sum() < (shown[..., 3] > 0).sum()
    c.mode_combo.setCurrentIndex(c.mode_combo.findData("filled"))
    present = [k for k in range(1, 4) if (viewer.doc.labels[0] == k).any()]
    k = present[0]
    c.legend.checks[k - 1].setChecked(False)
    hidden = viewer.canvas.main.overlay.image
    assert not hidden[viewer.doc.labels[0] == k, 3].any()
    c.legend.checks[k - 1].setChecked(True)
    # ground truth: the prediction itself with one class erased -> errors mode and a metrics table
    truth = viewer.doc.labels[0].copy()
    truth[truth == k] = 0
    assert viewer.load_truth(write_png(tmp_path / "gt.png", truth))
    assert viewer.doc.compare == "errors" and c.error_legend.isVisible()
    assert c.metrics.rowCount() == 3 and c.metrics.isVisible()
    assert c.metrics.value(k - 1, "dice_slice") == pytest.approx(0.0)
    other = [j for j in present if j != k]
    if other:
        assert c.metrics.value(other[0] - 1, "dice_slice") == pytest.approx(1.0)
    assert "Mean Dice" in c.mean_label.text()
    c.compare_combo.setCurrentIndex(c.compare_combo.findData("side by side"))
    assert viewer.canvas.second is not None
    c.compare_combo.setCurrentIndex(c.compare_combo.findData("prediction"))
    assert viewer.canvas.second is None


def test_drop_opens_images_and_loads_models(viewer, qtbot, bundle):
    def drop(path):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                        Qt.KeyboardModifier.NoModifier)
        viewer.dropEvent(ev)

    with qtbot.waitSignal(viewer.volume_opened, timeout=30_000):
        drop(_testdata("MR_small.dcm"))
    with qtbot.waitSignal(viewer.model_loaded, timeout=60000):
        drop(bundle)
    assert viewer.predictor is not None and viewer.doc.is_open


def test_error_messages_name_the_file(viewer, qtbot, bundle, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert not viewer.open_path(corrupt)
    assert "corrupt.png" in viewer.last_error and viewer.banner.isVisible()
    viewer.load_model(tmp_path / "no_model_here")
    assert "no_model_here" in viewer.last_error and "does not exist" in viewer.last_error
    viewer.predictor = None
    viewer.run_slice()
    assert "Load a model first" in viewer.last_error
    # a ground truth with 6 classes, then a 4-class model: refused, naming both
    img = np.zeros((32, 40), np.uint8)
    assert viewer.open_path(write_png(tmp_path / "img.png", img))
    gt = img.copy()
    gt[5:9, 5:9] = 5
    assert viewer.load_truth(write_png(tmp_path / "gt6.png", gt))
    with qtbot.waitSignal(viewer.error_shown, timeout=60000):
        viewer.load_model(bundle)
    assert "gt6.png" in viewer.last_error and "4 classes" in viewer.last_error
    assert viewer.predictor is None
    # the other way round: model first, then a truth with too many classes
    viewer.doc.clear_truth()
    load(viewer, qtbot, bundle)
    assert not viewer.load_truth(tmp_path / "gt6.png")
    assert "gt6.png" in viewer.last_error and "up to 5" in viewer.last_error
    assert not viewer.load_truth(write_png(tmp_path / "gt_small.png", np.zeros((8, 8), np.uint8)))
    assert "gt_small.png" in viewer.last_error and "shape" in viewer.last_error
    bad = Path(bundle).parent / "broken_bundle"
    import shutil

    shutil.copytree(bundle, bad, dirs_exist_ok=True)
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    with qtbot.waitSignal(viewer.error_shown, timeout=60000):
        viewer.load_model(bad)
    assert "broken_bundle" in viewer.last_error and "model.safetensors" in viewer.last_error
