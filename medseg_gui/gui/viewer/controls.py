"""The viewer's side panel: model, run, window/level, overlay, legend, comparison and export controls.

Plain widgets exposed as attributes; ``ViewerWidget`` wires them to its intents and fills them from
``core.viewer_doc.ViewerDocument``. Nothing here decides anything.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFrame, QGridLayout,
                               QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSlider, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from medseg_gui.core.imaging.overlay import ERROR_COLORS, ERROR_LABELS

GREYED = "#b8c0ca"  # class swatches while the error map (which does not use class colours) is shown


class Banner(QFrame):
    """A one-line message under the toolbar with a close button: red for problems, green for "Saved …".

    Why a close button and ``clear()``: a banner that outlives what it reports (an old error after the
    next image opened fine, "Saved" an hour later) misleads; the viewer clears it on the next action.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        self.label = QLabel()
        self.label.setProperty("role", "banner")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss this message")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.clear)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)

    def show_message(self, text: str, ok: bool = False) -> None:
        self.label.setText(text)
        self.label.setProperty("state", "ok" if ok else "bad")
        self.label.style().unpolish(self.label)
        self.label.style().polish(self.label)
        self.setVisible(True)

    def text(self) -> str:
        return self.label.text()

    def is_ok(self) -> bool:
        return self.label.property("state") == "ok"

    def clear(self) -> None:
        self.label.setText("")
        self.setVisible(False)


def swatch(colour: str, size: int = 12) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(QColor(colour))
    return QIcon(pix)


def _card(title: str) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame()
    frame.setProperty("card", True)
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(12, 10, 12, 12)
    layout.setSpacing(6)
    label = QLabel(title)
    label.setProperty("role", "cardTitle")
    layout.addWidget(label)
    return frame, layout


class LegendWidget(QWidget):
    """One row per class: visibility checkbox, colour swatch, name. Background has no checkbox."""

    toggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self.checks: list[QCheckBox] = []
        self._colours: list[str] = []
        self.greyed = False
        self.empty = QLabel("Load a model to see its classes.")
        self.empty.setProperty("role", "muted")
        self._layout.addWidget(self.empty)
        self.note = QLabel("The error map has its own colours; the ticks still choose which classes it shows.")
        self.note.setProperty("role", "caption")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        self._layout.addWidget(self.note)

    def set_classes(self, names: list[str], colours: list[str], visible: list[bool]) -> None:
        for box in self.checks:
            self._layout.removeWidget(box)
            box.deleteLater()
        self.checks = []
        self._colours = list(colours)
        self.empty.setVisible(len(names) <= 1)
        for k in range(1, len(names)):
            box = QCheckBox(names[k])
            box.setChecked(visible[k] if k < len(visible) else True)
            box.toggled.connect(lambda on, k=k: self.toggled.emit(k, on))
            self._layout.insertWidget(self._layout.indexOf(self.note), box)
            self.checks.append(box)
        self.set_greyed(self.greyed)

    def set_greyed(self, greyed: bool) -> None:
        """Grey the class swatches while the error map is shown: its colours are not the classes'."""
        self.greyed = greyed
        for k, box in enumerate(self.checks, start=1):
            colour = GREYED if greyed or not self._colours else self._colours[k % len(self._colours)]
            box.setIcon(swatch(colour, 14))
            box.setStyleSheet(f"color:{GREYED}" if greyed else "")
        self.note.setVisible(greyed and bool(self.checks))


class ErrorLegend(QWidget):
    """The colours of the error map (shown only in error mode)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(2)
        for i, (key, rgb) in enumerate(ERROR_COLORS.items()):
            icon = QLabel()
            icon.setPixmap(swatch("#%02x%02x%02x" % rgb, 12).pixmap(12, 12))
            text = QLabel(ERROR_LABELS[key])
            text.setProperty("role", "caption")
            grid.addWidget(icon, i // 2, (i % 2) * 2)
            grid.addWidget(text, i // 2, (i % 2) * 2 + 1)


class MetricsTable(QTableWidget):
    """Per-class Dice and IoU for the current slice and the predicted volume (2 decimals; the tooltip
    holds 4), narrow enough for the side panel."""

    HEADERS = ["Class", "Dice\nslice", "Dice\nvol.", "IoU\nslice", "IoU\nvol."]
    KEYS = ["dice_slice", "dice_volume", "iou_slice", "iou_volume"]

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(self.HEADERS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.values: list[dict] = []

    def set_rows(self, rows: list[dict]) -> None:
        self.values = rows
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            name = QTableWidgetItem(swatch(row["colour"]), row["class"])
            name.setToolTip(row["class"])
            self.setItem(r, 0, name)
            for c, key in enumerate(self.KEYS, start=1):
                value = row.get(key)
                item = QTableWidgetItem(_cell(value))
                item.setToolTip("undefined: the class is in neither mask" if value is None else f"{value:.4f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, item)
        header_h = max(self.horizontalHeader().sizeHint().height(), 24)
        self.setFixedHeight(header_h + self.verticalHeader().defaultSectionSize() * len(rows) + 4)

    def value(self, row: int, key: str) -> float | None:
        return self.values[row].get(key)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


class ControlsPanel(QScrollArea):
    """The scrollable side panel."""

    def set_compare_available(self, available: tuple[str, ...]) -> None:
        """Enable only the Show modes that can draw something (the truth modes need a ground truth)."""
        model = self.compare_combo.model()
        for i in range(self.compare_combo.count()):
            item = model.item(i)
            item.setEnabled(self.compare_combo.itemData(i) in available)
        self.compare_combo.setEnabled(len(available) > 1)

    def compare_enabled(self, key: str) -> bool:
        i = self.compare_combo.findData(key)
        return i >= 0 and self.compare_combo.model().item(i).isEnabled()

    def show_window(self, window: tuple[float, float] | None) -> None:
        """Level and width of the open image, or blank ("–") when nothing is open."""
        for spin, value in ((self.centre_spin, None if window is None else window[0]),
                            (self.width_spin, None if window is None else window[1])):
            spin.blockSignals(True)
            spin.setValue(spin.minimum() if value is None else value)
            spin.blockSignals(False)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedWidth(340)
        # the app's sheet greys disabled buttons only: an empty viewer's window fields looked editable
        self.setStyleSheet("QComboBox:disabled, QAbstractSpinBox:disabled { background: #eef1f5; "
                           "color: #9aa5b3; border-color: #d5dbe3; }")
        body = QWidget()
        body.setObjectName("page")
        self.setWidget(body)
        col = QVBoxLayout(body)
        col.setContentsMargins(8, 8, 10, 8)
        col.setSpacing(8)

        # model + run
        card, lay = _card("Model")
        self.model_label = QLabel("No model loaded")
        self.model_label.setWordWrap(True)
        self.model_label.setProperty("role", "muted")
        lay.addWidget(self.model_label)
        row = QHBoxLayout()
        self.load_model_button = QPushButton("Load model…")
        self.load_model_button.setToolTip("A model bundle folder, a training run folder, or a .safetensors file")
        row.addWidget(self.load_model_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.run_slice_button = QPushButton("Run on slice")
        self.run_volume_button = QPushButton("Run on volume")
        self.run_volume_button.setProperty("primary", True)
        row.addWidget(self.run_slice_button)
        row.addWidget(self.run_volume_button)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        col.addWidget(card)

        # window / level
        card, lay = _card("Window / level")
        self.preset_combo = QComboBox()
        self.preset_combo.setEnabled(False)  # nothing open: no window to choose
        lay.addWidget(self.preset_combo)
        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        self.centre_spin = QDoubleSpinBox()
        self.width_spin = QDoubleSpinBox()
        for spin in (self.centre_spin, self.width_spin):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.setKeyboardTracking(False)
        self.width_spin.setMinimum(0.0)  # 0 shows "–" (nothing open); the viewer keeps real widths >= 0.1
        for spin in (self.centre_spin, self.width_spin):
            spin.setSpecialValueText("–")  # shown at the minimum: nothing open, no window to show
            spin.setValue(spin.minimum())
            spin.setEnabled(False)
        grid.addWidget(QLabel("Level"), 0, 0)
        grid.addWidget(self.centre_spin, 0, 1)
        grid.addWidget(QLabel("Width"), 1, 0)
        grid.addWidget(self.width_spin, 1, 1)
        lay.addLayout(grid)
        hint = QLabel("Right-drag on the image: ↔ width, ↕ level")
        hint.setProperty("role", "caption")
        lay.addWidget(hint)
        col.addWidget(card)

        # overlay + legend
        card, lay = _card("Overlay")
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_label = QLabel("50%")
        self.opacity_label.setMinimumWidth(36)
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_label)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Style"))
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Filled", "filled")
        self.mode_combo.addItem("Contour", "contour")
        row.addWidget(self.mode_combo, 1)
        lay.addLayout(row)
        self.legend = LegendWidget()
        lay.addWidget(self.legend)
        col.addWidget(card)

        # compare
        card, lay = _card("Compare with ground truth")
        self.truth_label = QLabel("No ground truth loaded")
        self.truth_label.setWordWrap(True)
        self.truth_label.setProperty("role", "muted")
        lay.addWidget(self.truth_label)
        self.load_truth_button = QPushButton("Load ground truth…")
        self.load_truth_button.setToolTip("Mask PNG (class ids), NIfTI label volume, or DICOM SEG")
        lay.addWidget(self.load_truth_button)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        self.compare_combo = QComboBox()
        for text, key in (("Prediction", "prediction"), ("Ground truth", "truth"), ("Errors", "errors"),
                          ("Side by side", "side by side")):
            self.compare_combo.addItem(text, key)
        self.compare_combo.setToolTip("Ground truth, Errors and Side by side need a ground truth for this image")
        row.addWidget(self.compare_combo, 1)
        lay.addLayout(row)
        self.error_legend = ErrorLegend()
        self.error_legend.setVisible(False)
        lay.addWidget(self.error_legend)
        self.metrics = MetricsTable()
        self.metrics.setVisible(False)  # until there is a ground truth to compare with
        lay.addWidget(self.metrics)
        self.mean_label = QLabel("")
        self.mean_label.setWordWrap(True)
        self.mean_label.setProperty("role", "caption")
        lay.addWidget(self.mean_label)
        col.addWidget(card)

        # export
        card, lay = _card("Export")
        grid = QGridLayout()
        self.export_png_button = QPushButton("Mask PNG…")
        self.export_png_button.setToolTip("The current slice's mask as class ids (0, 1, 2, …)")
        self.export_nifti_button = QPushButton("Mask NIfTI…")
        self.export_nifti_button.setToolTip("The whole volume's mask in the source's space (.nii.gz)")
        self.export_overlay_button = QPushButton("Overlay PNG…")
        self.export_overlay_button.setToolTip("The current slice with the overlay, as you see it")
        self.export_seg_button = QPushButton("Mask DICOM SEG…")
        self.export_seg_button.setToolTip("The whole volume's mask as a DICOM segmentation that refers to the "
                                          "source series, one segment per class (for a PACS or 3D Slicer)")
        self.export_seg_button.setVisible(False)  # shown for DICOM inputs
        grid.addWidget(self.export_png_button, 0, 0)
        grid.addWidget(self.export_nifti_button, 0, 1)
        grid.addWidget(self.export_seg_button, 1, 0, 1, 2)
        grid.addWidget(self.export_overlay_button, 2, 0, 1, 2)
        lay.addLayout(grid)
        col.addWidget(card)
        col.addStretch(1)
