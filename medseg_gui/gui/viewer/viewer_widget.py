"""The Viewer page: open an image or volume, run a model in a worker thread, see, compare, export.

State and decisions live in ``core.viewer_doc.ViewerDocument``; this widget turns clicks, drags and
keys into calls on it and re-renders what it returns. Model loading and inference run in
``Task`` workers so the window never freezes; errors become one dialog naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMessageBox, QPushButton, QSlider,
                               QSplitter, QVBoxLayout, QWidget)

from medseg_gui.core.headline import HEADLINE_METRIC
from medseg_gui.core.imaging.viewer_doc import (COMPARE_MODES, SHOW_ERRORS, SHOW_PREDICTION, SIDE_BY_SIDE, TRUTH_MODES,
                                        ViewerDocument, model_display_name)
from medseg_gui.core.words import plural
from medseg_gui.gui.viewer.canvas import SliceCanvas
from medseg_gui.gui.viewer.controls import Banner, ControlsPanel
from medseg_gui.gui.viewer.open_filter import OPEN_FILE_FILTER
from medseg_gui.gui.workers import Task

MASK_FILTER = "Masks (*.png *.nii *.nii.gz *.dcm *.tif *.tiff);;All files (*)"


class ViewerWidget(QWidget):
    volume_opened = Signal(str)
    model_loaded = Signal(object)        # Predictor
    prediction_finished = Signal(object)  # Prediction or VolumePrediction
    task_failed = Signal(str)
    error_shown = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page")
        self.doc = ViewerDocument()
        self.predictor: Any = None
        self.task: Task | None = None
        self._task_kind = ""
        self.last_error: str | None = None
        self._error_box: QMessageBox | None = None
        self._run_after_load = False  # "Open best model in viewer": run it once it has loaded
        self.setAcceptDrops(True)
        self._build()
        self._wire()
        self._sync_enabled()

    # ----- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 8)
        outer.setSpacing(6)

        top = QHBoxLayout()
        self.open_file_button = QPushButton("Open image…")
        self.open_file_button.setToolTip("PNG/JPEG/TIFF, DICOM file or NIfTI volume (or drop files here)")
        self.open_folder_button = QPushButton("Open folder…")
        self.open_folder_button.setToolTip("A DICOM series, a folder of slices (same size, numbered names such as "
                                           "slice_001.png) or a folder of separate images, shown one by one")
        top.addWidget(self.open_file_button)
        top.addWidget(self.open_folder_button)
        self.title = QLabel("No image open")
        self.title.setProperty("role", "cardTitle")
        self.subtitle = QLabel("Open an image, a DICOM series or a NIfTI volume — or drop it here.")
        self.subtitle.setProperty("role", "muted")
        top.addSpacing(10)
        top.addWidget(self.title)
        top.addWidget(self.subtitle, 1)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Reset pan and zoom")
        top.addWidget(self.fit_button)
        outer.addLayout(top)

        self.banner = Banner()
        outer.addWidget(self.banner)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lcol = QVBoxLayout(left)
        lcol.setContentsMargins(0, 0, 0, 0)
        lcol.setSpacing(4)
        self.canvas = SliceCanvas()
        lcol.addWidget(self.canvas, 1)
        srow = QHBoxLayout()
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.slice_slider.setRange(0, 0)
        self.slice_slider.setVisible(False)
        self.slice_label = QLabel("slice –")
        self.slice_label.setMinimumWidth(96)
        srow.addWidget(self.slice_slider, 1)
        srow.addWidget(self.slice_label)
        lcol.addLayout(srow)
        self.readout = QLabel(" ")
        self.readout.setProperty("role", "caption")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lcol.addWidget(self.readout)
        split.addWidget(left)
        self.controls = ControlsPanel()
        split.addWidget(self.controls)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setCollapsible(0, False)
        outer.addWidget(split, 1)

    def _wire(self) -> None:
        c = self.controls
        self.open_file_button.clicked.connect(self.open_file_dialog)
        self.open_folder_button.clicked.connect(self.open_folder_dialog)
        self.fit_button.clicked.connect(self.canvas.reset_zoom)
        c.load_model_button.clicked.connect(self.load_model_dialog)
        c.run_slice_button.clicked.connect(self.run_slice)
        c.run_volume_button.clicked.connect(self.run_volume)
        c.cancel_button.clicked.connect(self.cancel)
        c.load_truth_button.clicked.connect(self.load_truth_dialog)
        c.export_png_button.clicked.connect(lambda: self._export_dialog("png"))
        c.export_nifti_button.clicked.connect(lambda: self._export_dialog("nifti"))
        c.export_seg_button.clicked.connect(lambda: self._export_dialog("dicom-seg"))
        c.export_overlay_button.clicked.connect(lambda: self._export_dialog("overlay"))
        c.preset_combo.activated.connect(lambda _i: self.apply_preset(c.preset_combo.currentText()))
        c.centre_spin.valueChanged.connect(self._spins_changed)
        c.width_spin.valueChanged.connect(self._spins_changed)
        c.opacity_slider.valueChanged.connect(self.set_opacity_percent)
        c.mode_combo.currentIndexChanged.connect(lambda _i: self.set_mode(c.mode_combo.currentData()))
        c.compare_combo.currentIndexChanged.connect(lambda _i: self.set_compare(c.compare_combo.currentData()))
        c.legend.toggled.connect(self.set_class_visible)
        self.slice_slider.valueChanged.connect(self.set_slice)
        self.canvas.step_requested.connect(lambda d: self.set_slice(self._position() + d))
        self.canvas.jump_requested.connect(lambda end: self.set_slice(0 if end < 0 else self._count() - 1))
        self.canvas.window_dragged.connect(self.drag_window)
        self.canvas.hovered.connect(self._hovered)
        self.canvas.left.connect(lambda: self.readout.setText(" "))

    # ----- errors -------------------------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """One non-blocking dialog (and the banner) naming the file and the problem."""
        self.last_error = message
        self.banner.show_message(f"{title}: {message}")
        if self._error_box is not None:
            self._error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self._error_box = box
        self.error_shown.emit(message)

    def _clear_error(self) -> None:
        """The next action starts: an old error or "Saved …" no longer describes what is on screen."""
        self.banner.clear()
        self.last_error = None

    def show_info(self, message: str) -> None:
        self.banner.show_message(message, ok=True)

    # ----- opening ------------------------------------------------------------------------------
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image or volume", "", OPEN_FILE_FILTER)
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM series or slice folder")
        if path:
            self.open_path(path)

    def open_path(self, path: str | os.PathLike) -> bool:
        """Open an image/volume; a failure leaves the current image in place and explains itself."""
        from medseg_gui.core.imaging.volume import ImageReadError

        self._cancel_inference()
        self._clear_error()
        try:
            self.doc.open(path)
        except (ImageReadError, ValueError, OSError) as exc:
            self.show_error("Cannot open image", str(exc))
            return False
        self._image_changed()
        self.canvas.graphics.setFocus()
        self.volume_opened.emit(str(path))
        return True

    def _image_changed(self) -> None:
        """A new image (or the next of an image list) is shown: Show goes back to Prediction, whose
        truth-based modes stay off until a ground truth is loaded for this image."""
        self.title.setText(self.doc.name)
        self.subtitle.setText(self._describe_volume())
        count = len(self.doc.image_list) if self.doc.is_image_list else self.doc.n_slices
        current = self.doc.image_index if self.doc.is_image_list else self.doc.slice_index
        self.slice_slider.blockSignals(True)
        self.slice_slider.setRange(0, max(0, count - 1))
        self.slice_slider.setValue(current)
        self.slice_slider.blockSignals(False)
        self.slice_slider.setVisible(count > 1)
        self._fill_window_controls()
        self.controls.truth_label.setText("No ground truth loaded")
        self.canvas.clear()
        self.set_compare(SHOW_PREDICTION)  # (re-renders)
        self.canvas.reset_zoom()

    def _describe_volume(self) -> str:
        v = self.doc.volume
        assert v is not None
        h, w = v.slice_shape
        parts = [f"{w}×{h}"]
        if v.n_slices > 1:
            parts.append(plural(v.n_slices, 'slice'))
        parts.append("RGB" if v.is_rgb else str(v.data.dtype))
        modality = v.meta.get("modality")
        if modality:
            parts.append(str(modality))
        if v.spacing:
            parts.append("spacing " + " × ".join(f"{s:.2g}" for s in v.spacing) + " mm")
        if v.meta.get("note"):
            parts.append(str(v.meta["note"]))
        if self.doc.is_image_list:
            parts.append(f"image {self.doc.image_index + 1} of {len(self.doc.image_list)} in the folder "
                         "(separate images, not one volume)")
        return " · ".join(parts)

    # ----- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_dropped(paths[0])

    def open_dropped(self, path: str) -> None:
        """A model (bundle/run folder/.safetensors) loads as the model; anything else opens as an image."""
        from medseg_gui.core.runs import BUNDLE_META_FILE
        from medseg_gui.core.engine.inference import ModelLoadError, describe_model_path

        p = Path(path)
        try:
            if p.is_dir() or p.suffix == ".safetensors" or p.name == BUNDLE_META_FILE:
                describe_model_path(p)
                self.load_model(p)
                return
        except ModelLoadError:
            if p.suffix == ".safetensors":
                self.load_model(p)  # reports why it cannot be loaded
                return
        self.open_path(p)

    # ----- window / level -----------------------------------------------------------------------
    def _fill_window_controls(self) -> None:
        c = self.controls
        c.preset_combo.blockSignals(True)
        c.preset_combo.clear()
        c.preset_combo.addItems(self.doc.window_presets())
        c.preset_combo.setCurrentText(self.doc.window_preset)
        c.preset_combo.blockSignals(False)
        on = self.doc.windowable
        for w in (c.preset_combo, c.centre_spin, c.width_spin):
            w.setEnabled(on)
        self._show_window_values()

    def _show_window_values(self) -> None:
        c = self.controls
        c.show_window(self.doc.window if self.doc.windowable else None)
        if self.doc.window_preset in self.doc.window_presets():
            c.preset_combo.setCurrentText(self.doc.window_preset)

    def apply_preset(self, name: str) -> None:
        if not self.doc.is_open:
            return
        self.doc.apply_preset(name)
        self._show_window_values()
        self.refresh()

    def _spins_changed(self, _value: float) -> None:
        if not self.doc.windowable:
            return
        self.doc.set_window(self.controls.centre_spin.value(), max(0.1, self.controls.width_spin.value()))
        self.refresh()

    def drag_window(self, dx: float, dy: float) -> None:
        if not self.doc.windowable:
            return
        self.doc.drag_window(dx, dy)
        self._show_window_values()
        self.refresh()

    # ----- slices and rendering -----------------------------------------------------------------
    def set_slice(self, z: int) -> None:
        if not self.doc.is_open:
            return
        if self.doc.is_image_list:
            self._select_image(z)
            return
        z = self.doc.set_slice(z)
        if self.slice_slider.value() != z:
            self.slice_slider.blockSignals(True)
            self.slice_slider.setValue(z)
            self.slice_slider.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        """Re-render the current slice, overlay, second pane, slice label and metrics."""
        doc = self.doc
        if not doc.is_open:
            return
        v = doc.volume
        assert v is not None
        image = doc.display_slice()
        y_scale = 1.0
        if v.spacing and v.spacing[2]:
            y_scale = float(v.spacing[1]) / float(v.spacing[2]) or 1.0
        second = None
        captions = ("", "")
        if doc.compare == SIDE_BY_SIDE and doc.truth is not None:
            second = (image, doc.truth_overlay())
            captions = ("Prediction" if doc.slice_has_prediction() else "Prediction (not run on this slice)",
                        "Ground truth")
        self.canvas.show_slice(image, doc.main_overlay(), y_scale=y_scale, second=second, captions=captions)
        z, n = doc.slice_index, doc.n_slices
        mark = " ●" if doc.slice_has_prediction() else ""
        if doc.is_image_list:
            z, n = doc.image_index, len(doc.image_list)
            self.slice_label.setText(f"image {z + 1} / {n}{mark}")
        else:
            self.slice_label.setText(f"slice {z + 1} / {n}{mark}")
        current = doc.current_file()
        self.slice_label.setToolTip(current or "")
        if current and (doc.is_image_list or n > 1):
            self.title.setText(f"{doc.name} · {current}" if current != doc.name else current)
        self._refresh_metrics()
        self._sync_enabled()

    def _refresh_metrics(self) -> None:
        c = self.controls
        rows = self.doc.metrics_rows() if self.doc.truth is not None else []
        c.metrics.set_rows(rows)
        c.metrics.setVisible(bool(rows))
        s, v = self.doc.slice_scores(), self.doc.volume_scores()
        if s is None and v is None:
            c.mean_label.setText("Run the model to compare." if self.doc.truth is not None else "")
        else:
            parts = []
            if s is not None:
                parts.append(f"slice {_fmt(s.mean_dice())}")
            if v is not None:
                parts.append(f"volume {_fmt(v.mean_dice())}")
            c.mean_label.setText(f"{HEADLINE_METRIC[:1].upper()}{HEADLINE_METRIC[1:]}: " + " · ".join(parts))

    def _hovered(self, x: int, y: int) -> None:
        info = self.doc.hover(x, y)
        self.readout.setText(info.text() if info is not None else " ")

    def _position(self) -> int:
        return self.doc.image_index if self.doc.is_image_list else self.doc.slice_index

    def _count(self) -> int:
        return len(self.doc.image_list) if self.doc.is_image_list else self.doc.n_slices

    def _select_image(self, index: int) -> None:
        """Step to another image of an image list (each image has its own prediction and truth)."""
        from medseg_gui.core.imaging.volume import ImageReadError

        if index == self.doc.image_index:
            return
        self._cancel_inference()
        self._clear_error()
        try:
            self.doc.select_image(index)
        except (ImageReadError, ValueError, OSError) as exc:
            self.show_error("Cannot open image", str(exc))
            self.slice_slider.blockSignals(True)
            self.slice_slider.setValue(self.doc.image_index)
            self.slice_slider.blockSignals(False)
            return
        self._image_changed()

    # ----- overlay settings ---------------------------------------------------------------------
    def set_opacity_percent(self, value: int) -> None:
        self.doc.set_opacity(value / 100.0)
        self.controls.opacity_label.setText(f"{value}%")
        self.refresh()

    def set_mode(self, mode: str) -> None:
        self.doc.set_mode(mode)
        self.refresh()

    def set_compare(self, compare: str) -> None:
        if compare not in COMPARE_MODES:
            return
        if compare in TRUTH_MODES and self.doc.truth is None:
            compare = SHOW_PREDICTION  # nothing to compare with: never leave a mode that draws nothing
        self.doc.set_compare(compare)
        c = self.controls
        c.set_compare_available(self.doc.compare_modes())
        if c.compare_combo.currentData() != compare:
            c.compare_combo.blockSignals(True)
            c.compare_combo.setCurrentIndex(c.compare_combo.findData(compare))
            c.compare_combo.blockSignals(False)
        c.error_legend.setVisible(compare == SHOW_ERRORS)
        c.legend.set_greyed(compare == SHOW_ERRORS)
        self.refresh()

    def set_class_visible(self, class_id: int, shown: bool) -> None:
        if class_id < len(self.doc.visible):
            self.doc.set_visible(class_id, shown)
            self.refresh()

    def _fill_legend(self) -> None:
        self.controls.legend.set_classes(self.doc.class_names, self.doc.class_colors, self.doc.visible)

    # ----- model --------------------------------------------------------------------------------
    def load_model_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model bundle or a training run folder")
        if path:
            self.load_model(path)

    def load_model_and_run(self, path: str | os.PathLike) -> None:
        """Load a model and, once loaded, run it on the open image ("Open best model in viewer")."""
        self.load_model(path, run_after=True)

    def load_model(self, path: str | os.PathLike, run_after: bool = False) -> None:
        """Load in a worker (torch import + weights take seconds); ``model_loaded`` fires when ready."""
        from medseg_gui.core.engine.inference import ModelLoadError, Predictor, describe_model_path

        self._clear_error()
        try:
            describe_model_path(path)  # cheap checks first: a clear message without waiting for torch
        except ModelLoadError as exc:
            self.show_error("Cannot load model", str(exc))
            return
        self._run_after_load = run_after
        self.controls.model_label.setText(f"Loading {model_display_name(path)}…")
        self._start("model", lambda progress, stop: Predictor.from_path(path))

    def _model_ready(self, predictor: Any) -> None:
        from medseg_gui.core.imaging.truth import ClassCountError

        try:
            self.doc.set_model(str(predictor.info.path), predictor.class_names, predictor.class_colors)
        except ClassCountError as exc:
            self.controls.model_label.setText(self._model_text())
            self.show_error("Model does not fit the ground truth", str(exc))
            return
        self.predictor = predictor
        self._clear_error()
        self.controls.model_label.setText(self._model_text())
        self._fill_legend()
        self.refresh()
        self.model_loaded.emit(predictor)
        warning = self._model_warning()
        if warning:  # what loading found (half-precision weights converted, NaN weights): say it, in red
            self.banner.show_message(warning)
        run_after, self._run_after_load = self._run_after_load, False
        if run_after:
            if not self.doc.is_open and not warning:
                self.show_info(f"Model {model_display_name(predictor.info.path)} loaded. Open an image (or drop "
                               "it here) and press Run.")
            elif self.doc.n_slices > 1:
                self.run_volume()
            else:
                self.run_slice()

    def _model_warning(self) -> str:
        """The loaded model's warnings as one banner line ("" when it loaded cleanly)."""
        found = list(getattr(self.predictor.info, "warnings", ()) or ()) if self.predictor is not None else []
        if not found:
            return ""
        return f"Model {model_display_name(self.predictor.info.path)} loaded with a warning: " + "; ".join(found)

    def _model_text(self) -> str:
        if self.predictor is None:
            return "No model loaded"
        p = self.predictor
        return f"<b>{model_display_name(p.info.path)}</b><br>{p.describe()}"

    # ----- inference ----------------------------------------------------------------------------
    def run_slice(self) -> None:
        self._clear_error()
        if not self._can_run():
            return
        z = self.doc.slice_index
        image = self.doc.model_input()[z]
        predictor = self.predictor
        self._start("slice", lambda progress, stop: (z, predictor.predict_slice(image)))

    def run_volume(self) -> None:
        self._clear_error()
        if not self._can_run():
            return
        data = self.doc.model_input()
        predictor = self.predictor
        self._start("volume", lambda progress, stop: predictor.predict_volume(data, progress=progress,
                                                                               should_stop=stop.is_set))

    def _can_run(self) -> bool:
        if self.predictor is None:
            self.show_error("No model", "Load a model first: a bundle folder, a training run folder or a "
                                        ".safetensors file next to its medseg.json.")
            return False
        if not self.doc.is_open:
            self.show_error("No image", "Open an image or a volume first.")
            return False
        return self.task is None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.controls.cancel_button.setEnabled(False)

    def _cancel_inference(self) -> None:
        if self.task is not None and self._task_kind in ("slice", "volume"):
            self.task.cancel()
            self._task_kind = "discard"

    def _start(self, kind: str, fn) -> None:
        if self.task is not None:
            self.show_error("Busy", "Another task is still running; wait for it or cancel it.")
            return
        task = Task(fn, name=f"viewer-{kind}", parent=self)
        self.task, self._task_kind = task, kind
        task.progressed.connect(self._progress)
        task.succeeded.connect(lambda result, t=task: self._task_done(t, result, None))
        task.failed.connect(lambda message, trace, t=task: self._task_done(t, None, message))
        task.ended.connect(lambda t=task: self._task_ended(t))
        c = self.controls
        c.progress.setRange(0, 0)
        c.progress.setVisible(True)
        c.cancel_button.setVisible(kind in ("slice", "volume"))
        c.cancel_button.setEnabled(True)
        self._sync_enabled()
        task.start()

    def _progress(self, done: int, total: int) -> None:
        c = self.controls
        c.progress.setRange(0, max(1, total))
        c.progress.setValue(done)
        c.progress.setFormat(f"{done} / {plural(total, 'slice')}")

    def _task_done(self, task: Task, result: Any, error: str | None) -> None:
        """The task's result arrived (its thread is about to end): free the slot, then apply it."""
        if self.task is not task:
            return
        kind = self._task_kind
        self.task, self._task_kind = None, ""
        self.controls.progress.setVisible(False)
        self.controls.cancel_button.setVisible(False)
        self._sync_enabled()
        if error is None:
            self._task_succeeded(kind, result)
        else:
            self._task_failed(kind, error)

    def _task_succeeded(self, kind: str, result: Any) -> None:
        if kind == "model":
            self._model_ready(result)
        elif kind == "slice":
            z, pred = result
            self.doc.set_slice_prediction(z, pred.labels, pred.confidence)
            self.refresh()
            self.prediction_finished.emit(pred)
        elif kind == "volume":
            self.doc.set_volume_prediction(result.labels, result.confidence, result.done)
            self.refresh()
            if result.cancelled:
                self.readout.setText(f"Cancelled after {result.done} of {plural(self.doc.n_slices, 'slice')}")
            self.prediction_finished.emit(result)

    def _task_failed(self, kind: str, message: str) -> None:
        if kind == "model":
            self.controls.model_label.setText(self._model_text())
            self.show_error("Cannot load model", message)
        elif kind != "discard":
            self.show_error("Inference failed", message)
        self.task_failed.emit(message)

    def _task_ended(self, task: Task) -> None:
        if self.task is task:  # ended without a result (should not happen; be safe)
            self.task, self._task_kind = None, ""
            self.controls.progress.setVisible(False)
            self.controls.cancel_button.setVisible(False)
            self._sync_enabled()

    def _sync_enabled(self) -> None:
        c = self.controls
        busy = self.task is not None
        ready = self.predictor is not None and self.doc.is_open and not busy
        why = ("Wait for the running task, or cancel it" if busy else
               "Load a model first (Load model…)" if self.predictor is None else
               "Open an image first (Open image… or Open folder…)" if not self.doc.is_open else "")
        c.run_slice_button.setEnabled(ready)
        c.run_volume_button.setEnabled(ready)
        c.run_slice_button.setToolTip(why or "Segment the slice on screen")
        c.run_volume_button.setToolTip(why or "Segment every slice of the volume")
        # a disabled primary button keeps its blue and looks clickable: primary only while it can run
        if bool(c.run_volume_button.property("primary")) != ready:
            c.run_volume_button.setProperty("primary", ready)
            c.run_volume_button.style().unpolish(c.run_volume_button)
            c.run_volume_button.style().polish(c.run_volume_button)
        c.run_volume_button.setVisible(self.doc.n_slices != 1)
        c.set_compare_available(self.doc.compare_modes())
        c.load_model_button.setEnabled(not busy)
        self.fit_button.setEnabled(self.doc.is_open)
        c.load_truth_button.setEnabled(self.doc.is_open)
        has_slice = self.doc.slice_has_prediction()
        c.export_png_button.setEnabled(has_slice)
        c.export_overlay_button.setEnabled(self.doc.is_open and (has_slice or self.doc.truth is not None))
        from medseg_gui.core.imaging.predict_export import nifti_possible

        c.export_nifti_button.setEnabled(self.doc.has_prediction() and self.doc.volume is not None
                                         and nifti_possible(self.doc.volume))
        from medseg_gui.core.imaging.dicom_seg import dicom_seg_problem

        seg_ok = self.doc.volume is not None and not dicom_seg_problem(self.doc.volume)
        c.export_seg_button.setVisible(seg_ok)
        c.export_seg_button.setEnabled(seg_ok and self.doc.has_prediction())

    # ----- ground truth -------------------------------------------------------------------------
    def load_truth_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load ground-truth mask", "", MASK_FILTER)
        if path:
            self.load_truth(path)

    def load_truth(self, path: str | os.PathLike) -> bool:
        from medseg_gui.core.imaging.truth import ClassCountError
        from medseg_gui.core.imaging.viewer_doc import TruthError

        had_legend = bool(self.doc.class_names)
        self._clear_error()
        try:
            self.doc.load_truth(path)
        except (TruthError, ClassCountError, ValueError, OSError) as exc:
            title = "Ground truth does not fit the model" if isinstance(exc, ClassCountError) else "Cannot load ground truth"
            self.show_error(title, str(exc))
            return False
        self.controls.truth_label.setText(f"<b>{Path(path).name}</b>")
        self.controls.set_compare_available(self.doc.compare_modes())
        if not had_legend:
            self._fill_legend()
        if self.doc.compare == "prediction" and self.doc.has_prediction():
            self.set_compare("errors")
        else:
            self.refresh()
        return True

    # ----- export -------------------------------------------------------------------------------
    def _export_dialog(self, what: str) -> None:
        from medseg_gui.core.imaging.predict_export import safe_stem

        stem = safe_stem(self.doc.name or "image")
        z = self.doc.slice_index
        suffix = f"_{z + 1:04d}" if self.doc.n_slices > 1 else ""
        if what == "png":
            path, _ = QFileDialog.getSaveFileName(self, "Save mask PNG", f"{stem}{suffix}_mask.png", "PNG (*.png)")
        elif what == "nifti":
            path, _ = QFileDialog.getSaveFileName(self, "Save mask NIfTI", f"{stem}_mask.nii.gz",
                                                  "NIfTI (*.nii.gz *.nii)")
        elif what == "dicom-seg":
            path, _ = QFileDialog.getSaveFileName(self, "Save mask as DICOM SEG", f"{stem}_seg.dcm",
                                                  "DICOM (*.dcm)")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Save overlay PNG", f"{stem}{suffix}_overlay.png",
                                                  "PNG (*.png)")
        if path:
            self.export(what, path, overwrite=True)  # the save dialog already asked before replacing

    def export(self, what: str, path: str | os.PathLike, overwrite: bool = False) -> Path | None:
        """``what``: 'png' (current slice's mask), 'nifti' or 'dicom-seg' (volume mask), 'overlay' (what is shown).
        An existing file is replaced only with ``overwrite`` (the save dialog's own question said yes)."""
        from medseg_gui.core.imaging import predict_export as pe
        from medseg_gui.core.imaging.overlay import blend, grey_to_rgb

        doc = self.doc
        self._clear_error()
        try:
            if what == "png":
                if not doc.slice_has_prediction():
                    raise ValueError("this slice has no prediction yet; run the model first")
                assert doc.labels is not None
                written = pe.export_mask_png(path, doc.labels[doc.slice_index], overwrite=overwrite)
            elif what in ("nifti", "dicom-seg"):
                if doc.predicted is None or not doc.predicted.all():
                    missing = doc.n_slices - (0 if doc.predicted is None else int(doc.predicted.sum()))
                    raise ValueError(f"{missing} of {doc.n_slices} slices have no prediction; use Run on volume first")
                assert doc.volume is not None and doc.labels is not None
                if what == "nifti":
                    written = pe.export_mask_nifti(path, doc.labels, doc.volume, overwrite=overwrite)
                else:
                    written = pe.export_mask_dicom_seg(path, doc.labels, doc.volume, doc.class_names,
                                                       overwrite=overwrite)
            elif what == "overlay":
                overlay = doc.main_overlay()
                image = doc.display_slice()
                written = pe.write_rgb_png(path, blend(image, overlay) if overlay is not None else grey_to_rgb(image),
                                           overwrite=overwrite)
            else:
                raise ValueError(f"unknown export {what!r}")
        except (ValueError, OSError) as exc:
            self.show_error("Export failed", f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
            return None
        self.show_info(f"Saved {written}")
        return written

    # ----- lifecycle ----------------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for a running task (called when the window closes and by tests)."""
        for task in self.findChildren(Task):  # the current task and any whose thread is still ending
            task.cancel()
            task.wait(timeout_ms)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)


def _fmt(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.3f}"
