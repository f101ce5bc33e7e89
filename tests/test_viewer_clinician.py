"""The Viewer as a clinician meets it: Show resets per image, error colours apart from classes, equal
side-by-side panes, models named by their run, folders of separate images, banners that go away."""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core.imaging import overlay as ov  # noqa: E402
from medseg_gui.core.config import DEFAULT_CLASS_COLORS  # noqa: E402
from medseg_gui.core.imaging.viewer_doc import (IMAGE_LIST, SLICE_STACK, ViewerDocument, folder_layout,  # noqa: E402
                                        model_display_name)
from medseg_gui.gui.viewer import ViewerWidget  # noqa: E402
from viewer_helpers import ramp_image, tiny_bundle, write_png  # noqa: E402


@pytest.fixture(scope="module")
def run_bundle(tmp_path_factory):
    """A tiny model saved where a training run puts it: <run folder>/bundle."""
    return tiny_bundle(tmp_path_factory.mktemp("runs") / "20260101-120000_b0_demo")


@pytest.fixture
def viewer(qtbot):
    w = ViewerWidget()
    qtbot.addWidget(w)
    w.resize(1366, 700)
    w.show()
    yield w
    w.shutdown()


def _truth(h: int = 80, w: int = 96) -> np.ndarray:
    t = np.zeros((h, w), np.uint8)
    t[10:40, 20:60] = 1
    return t


def test_show_mode_resets_on_open_and_truth_modes_need_a_truth(viewer, tmp_path):
    c = viewer.controls
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image()))
    for key in ("truth", "errors", "side by side"):
        assert not c.compare_enabled(key)
    assert c.compare_enabled("prediction")
    assert viewer.load_truth(write_png(tmp_path / "a_gt.png", _truth()))
    assert all(c.compare_enabled(k) for k in ("truth", "errors", "side by side"))
    c.compare_combo.setCurrentIndex(c.compare_combo.findData("errors"))
    assert viewer.doc.compare == "errors"
    # the next image has no ground truth: Show goes back to Prediction and the truth modes are off
    assert viewer.open_path(write_png(tmp_path / "b.png", ramp_image()[::-1].copy()))
    assert viewer.doc.compare == "prediction" and c.compare_combo.currentData() == "prediction"
    assert not c.compare_enabled("errors") and not c.error_legend.isVisible()
    viewer.set_compare("side by side")  # asked for without a truth: stays on Prediction
    assert viewer.doc.compare == "prediction" and viewer.canvas.second is None
    with pytest.raises(ValueError, match="ground truth"):
        viewer.doc.set_compare("errors")


def test_error_colours_are_not_class_colours_and_legend_greys(viewer, qtbot, run_bundle, tmp_path):
    rgb = [ov.hex_to_rgb(c) for c in DEFAULT_CLASS_COLORS]
    errors = list(ov.ERROR_COLORS.values())
    assert len(set(errors)) == len(errors)
    for e in errors:  # far from every default class colour (sum of channel differences)
        assert min(sum(abs(a - b) for a, b in zip(e, c)) for c in rgb) >= 120, e
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image(64, 64)))
    with qtbot.waitSignal(viewer.model_loaded, timeout=60000):
        viewer.load_model(run_bundle)
    legend = viewer.controls.legend
    assert legend.checks and not legend.greyed
    assert viewer.load_truth(write_png(tmp_path / "gt.png", _truth(64, 64)))
    viewer.set_compare("errors")
    assert legend.greyed and legend.note.isVisible()
    viewer.set_compare("truth")
    assert not legend.greyed and not legend.note.isVisible()


def test_side_by_side_panes_are_equal(viewer, qtbot, tmp_path):
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image(200, 300)))
    assert viewer.load_truth(write_png(tmp_path / "gt.png", _truth(200, 300)))
    viewer.set_compare("side by side")
    second = viewer.canvas.second
    assert second is not None

    def equal() -> bool:
        a = viewer.canvas.main.view.sceneBoundingRect().width()
        b = second.view.sceneBoundingRect().width()
        return a > 100 and abs(a - b) <= 2

    qtbot.waitUntil(equal, timeout=30_000)


def test_model_named_by_its_run_and_best_model_runs_at_once(viewer, qtbot, run_bundle, tmp_path):
    assert model_display_name(run_bundle) == "20260101-120000_b0_demo"
    assert model_display_name(run_bundle / "model.safetensors") == "20260101-120000_b0_demo"
    assert model_display_name(tmp_path / "my_model") == "my_model"
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image(64, 64)))
    with qtbot.waitSignal(viewer.prediction_finished, timeout=60000):
        viewer.load_model_and_run(run_bundle)
    text = viewer.controls.model_label.text()
    assert "20260101-120000_b0_demo" in text and ">bundle<" not in text
    assert viewer.doc.slice_has_prediction()


def test_best_model_without_an_image_says_what_to_do(viewer, qtbot, run_bundle):
    with qtbot.waitSignal(viewer.model_loaded, timeout=60000):
        viewer.load_model_and_run(run_bundle)
    assert viewer.banner.isVisible() and "Open an image" in viewer.banner.text()
    assert not viewer.doc.has_prediction()


def test_folder_layout_volume_or_list(tmp_path):
    vol = tmp_path / "series"
    for i in range(3):
        write_png(vol / f"slice_{i + 1:03d}.png", ramp_image())
    kind, files = folder_layout(vol)
    assert kind == SLICE_STACK and [f.name for f in files] == ["slice_001.png", "slice_002.png", "slice_003.png"]
    cases = tmp_path / "cases"
    write_png(cases / "case01_3.png", ramp_image())
    write_png(cases / "case02_1.png", ramp_image())
    assert folder_layout(cases)[0] == IMAGE_LIST
    sizes = tmp_path / "sizes"
    write_png(sizes / "img_1.png", ramp_image(80, 96))
    write_png(sizes / "img_2.png", ramp_image(60, 96))
    assert folder_layout(sizes)[0] == IMAGE_LIST
    named = tmp_path / "named"
    write_png(named / "knee.png", ramp_image())
    write_png(named / "wrist.png", ramp_image())
    assert folder_layout(named)[0] == IMAGE_LIST
    doc = ViewerDocument()
    doc.open(vol)
    assert doc.n_slices == 3 and not doc.is_image_list and doc.current_file() == "slice_002.png"
    doc.set_slice(0)
    assert doc.current_file() == "slice_001.png"


def test_image_list_steps_through_separate_images(viewer, qtbot, tmp_path):
    folder = tmp_path / "mixed"
    write_png(folder / "case01_3.png", ramp_image(80, 96))
    write_png(folder / "case02_1.png", ramp_image(60, 70))
    assert viewer.open_path(folder)
    assert viewer.doc.is_image_list and viewer.doc.n_slices == 1
    assert "case01_3.png" in viewer.title.text() and "image 1 / 2" in viewer.slice_label.text()
    assert viewer.slice_slider.isVisible() and viewer.slice_slider.maximum() == 1
    assert viewer.load_truth(write_png(tmp_path / "gt.png", _truth(80, 96)))
    viewer.set_compare("errors")
    viewer.canvas.step_requested.emit(1)
    assert viewer.doc.image_index == 1 and viewer.doc.volume.slice_shape == (60, 70)
    assert "case02_1.png" in viewer.title.text() and "image 2 / 2" in viewer.slice_label.text()
    assert viewer.doc.truth is None and viewer.doc.compare == "prediction"


def test_banners_close_and_clear_on_the_next_action(viewer, tmp_path):
    assert not viewer.open_path(tmp_path / "missing.png")
    assert viewer.banner.isVisible() and not viewer.banner.is_ok()
    viewer.banner.close_button.click()
    assert not viewer.banner.isVisible()
    assert not viewer.open_path(tmp_path / "missing.png")
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image()))
    assert not viewer.banner.isVisible() and viewer.last_error is None
    assert viewer.load_truth(write_png(tmp_path / "gt.png", _truth()))
    written = viewer.export("overlay", tmp_path / "out.png")
    assert written is not None and viewer.banner.isVisible() and viewer.banner.is_ok()
    assert "Saved" in viewer.banner.text()
    viewer.set_slice(0)
    viewer.open_path(write_png(tmp_path / "b.png", ramp_image()))
    assert not viewer.banner.isVisible()


def test_empty_viewer_blanks_window_and_says_why_run_is_off(viewer, tmp_path):
    c = viewer.controls
    assert c.centre_spin.text() == "–" and c.width_spin.text() == "–"
    assert not c.centre_spin.isEnabled()
    assert not c.run_slice_button.isEnabled() and "model" in c.run_slice_button.toolTip().lower()
    assert not c.run_volume_button.property("primary")
    assert viewer.open_path(write_png(tmp_path / "a.png", ramp_image()))
    assert c.centre_spin.text() != "–" and c.centre_spin.isEnabled()


def test_slice_folder_shows_the_current_files_name(viewer, tmp_path):
    folder = tmp_path / "series"
    for i in range(3):
        write_png(folder / f"slice_{i + 1:03d}.png", ramp_image())
    assert viewer.open_path(folder)
    assert viewer.doc.n_slices == 3 and not viewer.doc.is_image_list
    assert "slice_002.png" in viewer.title.text()
    viewer.set_slice(0)
    assert "slice_001.png" in viewer.title.text() and "slice 1 / 3" in viewer.slice_label.text()
