"""Overlay colouring, Dice/IoU and the viewer document — numpy only, no Qt, no torch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from medseg_gui.core.imaging import overlay as ov
from medseg_gui.core.imaging.volume import Volume
from medseg_gui.core.imaging.truth import ClassCountError
from medseg_gui.core.imaging.seg_metrics import class_scores, confusion_matrix
from medseg_gui.core.imaging.viewer_doc import CT_PRESETS, SHOW_ERRORS, SHOW_TRUTH, TruthError, ViewerDocument
from viewer_helpers import write_png

COLOURS = ["#000000", "#ff0000", "#00ff00", "#0000ff"]


def test_filled_overlay_colours_opacity_and_visibility():
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    rgba = ov.label_overlay(labels, COLOURS, opacity=0.5)
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0  # background transparent
    assert tuple(rgba[0, 1]) == (255, 0, 0, 128)
    assert tuple(rgba[1, 0, :3]) == (0, 255, 0) and tuple(rgba[1, 1, :3]) == (0, 0, 255)
    hidden = ov.label_overlay(labels, COLOURS, opacity=1.0, visible=[True, True, False, True])
    assert hidden[1, 0, 3] == 0 and hidden[0, 1, 3] == 255 and hidden[1, 1, 3] == 255


def test_contour_marks_only_the_boundary_of_each_region():
    labels = np.zeros((7, 7), np.uint8)
    labels[1:6, 1:6] = 1
    edge = ov.boundaries(labels)
    assert edge[1, 1:6].all() and edge[5, 1:6].all() and edge[1:6, 1].all() and edge[1:6, 5].all()
    assert not edge[2:5, 2:5].any()  # interior
    assert not edge[0].any()  # background is never a contour
    rgba = ov.label_overlay(labels, COLOURS, opacity=0.3, mode=ov.CONTOUR)
    assert (rgba[..., 3] > 0).sum() == 16 and rgba[1, 1, 3] == 255


def test_contour_at_image_border_and_between_touching_classes():
    labels = np.array([[1, 1, 2, 2]] * 3, np.uint8)
    edge = ov.boundaries(labels)
    assert edge.all()  # every pixel touches the border or the other class
    assert not ov.boundaries(np.zeros((3, 3), np.uint8)).any()


def test_error_overlay_categories():
    truth = np.array([[1, 1, 0, 2]], np.uint8)
    pred = np.array([[1, 0, 1, 1]], np.uint8)
    cats = ov.error_categories(pred, truth)
    assert cats["tp"].tolist() == [[True, False, False, False]]
    assert cats["fn"].tolist() == [[False, True, False, False]]
    assert cats["fp"].tolist() == [[False, False, True, False]]
    assert cats["wrong"].tolist() == [[False, False, False, True]]
    rgba = ov.error_overlay(pred, truth, opacity=1.0)
    assert tuple(rgba[0, 0, :3]) == ov.ERROR_COLORS["tp"] and tuple(rgba[0, 2, :3]) == ov.ERROR_COLORS["fp"]
    only2 = ov.error_overlay(pred, truth, opacity=1.0, visible=[True, False, True])
    assert only2[0, :3, 3].tolist() == [0, 0, 0] and only2[0, 3, 3] == 255


def test_blend_and_bad_inputs():
    img = np.full((2, 2), 100, np.uint8)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    out = ov.blend(img, rgba)
    assert out.shape == (2, 2, 3) and tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (100, 100, 100)
    with pytest.raises(ValueError, match="#rrggbb"):
        ov.hex_to_rgb("red")
    with pytest.raises(ValueError, match="opacity"):
        ov.label_overlay(np.zeros((2, 2), np.uint8), COLOURS, opacity=1.5)


def test_dice_iou_per_class_slice():
    truth = np.array([[0, 1, 1, 2]], np.uint8)
    pred = np.array([[0, 1, 2, 2]], np.uint8)
    s = class_scores(pred, truth, 4)
    assert s.dice[1] == pytest.approx(2 * 1 / 3) and s.iou[1] == pytest.approx(0.5)
    assert s.dice[2] == pytest.approx(2 * 1 / 3) and s.iou[2] == pytest.approx(0.5)
    assert np.isnan(s.dice[3])  # absent everywhere: undefined, not a perfect score
    assert s.mean_dice() == pytest.approx(2 / 3)
    assert confusion_matrix(pred, truth, 4).sum() == 4
    with pytest.raises(ValueError, match="outside 0..3"):
        class_scores(pred, np.array([[0, 5, 1, 1]]), 4)


def test_seg_metrics_does_not_import_torch():
    assert "medseg_gui.core.imaging.seg_metrics" in sys.modules
    # the viewer's modules stay torch-free until a model is loaded
    import subprocess

    code = ("import sys, medseg_gui.core.imaging.viewer_doc, medseg_gui.core.imaging.predict_export, medseg_gui.core.imaging.overlay;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _ct_volume(z: int = 5) -> Volume:
    data = np.linspace(-1000, 1500, z * 16 * 20).reshape(z, 16, 20).astype(np.int16)
    return Volume(data, (2.0, 1.0, 1.0), __import__("pathlib").Path("ct"), "dicom", affine=np.eye(4),
                  meta={"modality": "CT", "rescale_applied": True})


def test_document_window_presets_and_drag():
    doc = ViewerDocument()
    doc.set_volume(_ct_volume())
    assert doc.window == CT_PRESETS["CT soft tissue"]  # CT in HU without its own window
    doc.apply_preset("CT lung")
    assert doc.window == (-600.0, 1500.0)
    lo = doc.display_slice(0)
    assert lo.dtype == np.uint8 and lo.shape == (16, 20)
    before = doc.window
    doc.drag_window(40, -20)  # right widens, up raises the level
    assert doc.window[1] > before[1] and doc.window[0] > before[0]
    doc.apply_preset("Auto (percentile)")
    assert doc.window[1] > 0
    with pytest.raises(ValueError, match="preset"):
        doc.apply_preset("nope")
    assert doc.set_slice(99) == 4 and doc.step(-10) == 0


def test_document_prediction_truth_metrics_and_hover():
    doc = ViewerDocument()
    doc.set_volume(_ct_volume(3))
    doc.set_model("m", ["background", "a", "b", "c"], COLOURS)
    truth = np.zeros((3, 16, 20), np.uint8)
    truth[:, 2:8, 2:8] = 1
    pred = truth.copy()
    pred[1, 2:8, 2:5] = 0
    doc.truth = truth
    doc.truth_source = "gt"
    doc.set_slice_prediction(1, pred[1], np.full((16, 20), 0.75, np.float16))
    doc.set_slice(1)
    rows = doc.metrics_rows()
    assert rows[0]["class"] == "a" and rows[0]["dice_slice"] == pytest.approx(2 * 18 / (18 + 36))
    assert rows[0]["dice_volume"] == rows[0]["dice_slice"]  # only slice 1 is predicted
    doc.set_volume_prediction(pred, np.ones(pred.shape, np.float16), done=3)
    assert doc.volume_scores().dice[1] == pytest.approx(2 * (36 + 18 + 36) / (108 + 90))
    info = doc.hover(6, 3)
    assert info.predicted == "a" and info.truth == "a" and "class a" in info.text()
    assert doc.hover(-1, 0) is None and doc.hover(20, 0) is None
    doc.set_compare(SHOW_ERRORS)
    assert doc.main_overlay() is not None
    doc.set_compare(SHOW_TRUTH)
    assert doc.main_overlay()[3, 3, 3] > 0


def test_document_truth_checks(tmp_path):
    doc = ViewerDocument()
    doc.set_volume(Volume(np.zeros((1, 10, 12), np.uint8), None, tmp_path / "img.png", "image"))
    doc.set_model("bundle-4", ["background", "a", "b", "c"], COLOURS)
    wrong = np.zeros((10, 12), np.uint8)
    wrong[0, 0] = 6
    with pytest.raises(ClassCountError, match="wrong.png.*up to 6.*4 classes"):
        doc.load_truth(write_png(tmp_path / "wrong.png", wrong))
    with pytest.raises(TruthError, match="small.png.*shape"):
        doc.load_truth(write_png(tmp_path / "small.png", np.zeros((5, 5), np.uint8)))
    ok = np.zeros((10, 12), np.uint8)
    ok[2:4, 2:4] = 3
    assert doc.load_truth(write_png(tmp_path / "ok.png", ok)).max() == 3
    with pytest.raises(ClassCountError, match="ok.png"):
        doc.set_model("bundle-2", ["background", "x"], COLOURS[:2])
