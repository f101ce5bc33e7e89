"""The live plots, progress line and log pane of the Training tab; draws a ``core.live_metrics.LiveMetrics``.

The view holds no training state: ``render(model)`` redraws only the parts the model marks dirty, and
the tab calls it from its throttled timer (at most 10 times a second). Curves are fed decimated arrays
(a few thousand points whatever the run length) and use pyqtgraph's ``clipToView`` and peak
``autoDownsample`` (as in pyqtgraph's examples/scrollingPlots.py), so redraws stay cheap after
100 000 steps.
"""

from __future__ import annotations

import html
import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QSizePolicy,
                               QVBoxLayout, QWidget)

from medseg_gui.core.live_metrics import LiveMetrics, format_duration
from medseg_gui.gui import style

LOSS_RAW = QColor(style.ACCENT)
LOSS_RAW.setAlpha(70)
LOSS_SMOOTH = style.ACCENT
VAL_LOSS = "#e0662f"
TRAIN_EPOCH_LOSS = style.ACCENT
F1 = "#1e8a4c"
LR = "#6b7785"
VRAM_USED = style.VRAM
VRAM_ALLOC = "#b99be6"
PEAK = "#e8913a"
CAPACITY = style.ERROR
LOG_COLOURS = {"info": style.TEXT, "warning": "#b26a00", "error": style.ERROR}


def _finite_or_empty(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (x, y) if len(x) else (np.empty(0), np.empty(0))


def _plot(title: str, x_label: str, y_label: str = "") -> pg.PlotWidget:
    widget = pg.PlotWidget(background=None)
    widget.setMinimumHeight(150)
    item = widget.getPlotItem()
    item.setTitle(f"<span style='color:{style.TEXT};font-size:10pt'>{html.escape(title)}</span>")
    item.setLabel("bottom", x_label)
    if y_label:
        item.setLabel("left", y_label)
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setClipToView(True)
    item.setDownsampling(auto=True, mode="peak")
    item.setMenuEnabled(True)
    return widget


class LiveView(QWidget):
    """Six plots, a progress bar with epoch/step, images/s and ETA, and a colour-coded log pane."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.redraws = 0  # how many times render() drew something (the throttle test reads it)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        top = QHBoxLayout()
        self.status_label = QLabel("No run yet")
        self.status_label.setFont(style.scaled_font(self.font(), 1.1, bold=True))
        top.addWidget(self.status_label)
        top.addStretch(1)
        self.stats_label = QLabel("")
        self.stats_label.setProperty("role", "muted")
        top.addWidget(self.stats_label)
        layout.addLayout(top)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        layout.addWidget(self.progress)

        grid = QGridLayout()
        grid.setSpacing(6)
        self.loss_plot = _plot("Training loss per step (faint: raw, line: smoothed)", "step", "loss")
        self.val_plot = _plot("Loss per epoch", "epoch", "loss")
        self.f1_plot = _plot("Validation macro F1 per epoch", "epoch", "F1")
        self.dice_plot = _plot("Validation Dice per class", "epoch", "Dice")
        self.lr_plot = _plot("Learning rate", "step", "lr")
        self.vram_plot = _plot("GPU memory over time", "seconds since start", "GB")
        for i, plot in enumerate((self.loss_plot, self.val_plot, self.f1_plot, self.dice_plot, self.lr_plot,
                                  self.vram_plot)):
            grid.addWidget(plot, i // 3, i % 3)
        layout.addLayout(grid, 3)

        self.loss_raw = self.loss_plot.plot(pen=pg.mkPen(LOSS_RAW, width=1))
        self.loss_smooth = self.loss_plot.plot(pen=pg.mkPen(LOSS_SMOOTH, width=2))
        val_legend = self.val_plot.addLegend(offset=(-10, 10))
        self.train_epoch_loss = self.val_plot.plot(pen=pg.mkPen(TRAIN_EPOCH_LOSS, width=2), symbol="o", symbolSize=5,
                                                   symbolBrush=TRAIN_EPOCH_LOSS, name="training")
        self.val_loss = self.val_plot.plot(pen=pg.mkPen(VAL_LOSS, width=2), symbol="o", symbolSize=5,
                                           symbolBrush=VAL_LOSS, name="validation")
        val_legend.setBrush(pg.mkBrush(255, 255, 255, 200))
        self.f1 = self.f1_plot.plot(pen=pg.mkPen(F1, width=2), symbol="o", symbolSize=5, symbolBrush=F1)
        self.f1_plot.setYRange(0, 1, padding=0.02)
        self.dice_plot.setYRange(0, 1, padding=0.02)
        self.dice_legend = self.dice_plot.addLegend(offset=(-10, 10))
        self.dice_legend.setBrush(pg.mkBrush(255, 255, 255, 200))
        self.dice_curves: list[pg.PlotDataItem] = []
        self.lr = self.lr_plot.plot(pen=pg.mkPen(LR, width=2))
        vram_legend = self.vram_plot.addLegend(offset=(-10, 10))
        vram_legend.setBrush(pg.mkBrush(255, 255, 255, 200))
        self.vram_used = self.vram_plot.plot(pen=pg.mkPen(VRAM_USED, width=2), name="used")
        self.vram_alloc = self.vram_plot.plot(pen=pg.mkPen(VRAM_ALLOC, width=1), name="tensors")
        self.peak_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(PEAK, width=1.5, style=Qt.PenStyle.DashLine),
                                         label="predicted peak {value:.1f} GB",
                                         labelOpts={"position": 0.15, "color": PEAK})
        self.capacity_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(CAPACITY, width=1.5),
                                             label="card {value:.1f} GB",
                                             labelOpts={"position": 0.85, "color": CAPACITY})
        for line in (self.peak_line, self.capacity_line):
            line.setVisible(False)
            self.vram_plot.addItem(line, ignoreBounds=False)
        self.vram_note = pg.TextItem("", color=style.MUTED, anchor=(0.5, 0.5))
        self.vram_plot.addItem(self.vram_note, ignoreBounds=True)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText("Messages from the run appear here.")
        self.log_view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.log_view.setMinimumHeight(90)
        layout.addWidget(self.log_view, 1)
        self._log_shown = 0
        self._dice_names: list[str] = []

    # ---- drawing -------------------------------------------------------------------------------
    def clear(self) -> None:
        for curve in (self.loss_raw, self.loss_smooth, self.train_epoch_loss, self.val_loss, self.f1, self.lr,
                      self.vram_used, self.vram_alloc):
            curve.setData([], [])
        for curve in self.dice_curves:
            self.dice_plot.removeItem(curve)
        self.dice_curves.clear()
        self.dice_legend.clear()
        self._dice_names = []
        self.peak_line.setVisible(False)
        self.capacity_line.setVisible(False)
        self.log_view.clear()
        self._log_shown = 0
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.stats_label.setText("")
        self.status_label.setText("No run yet")

    def render(self, model: LiveMetrics, force: bool = False) -> bool:
        """Redraw what changed in ``model``; returns whether anything was drawn."""
        dirty = model.take_dirty()
        if force:
            dirty |= {"steps", "epochs", "vram", "progress", "log", "run"}
        if not dirty:
            return False
        if "steps" in dirty:
            self._draw_steps(model)
        if "epochs" in dirty or "run" in dirty:
            self._draw_epochs(model)
        if "vram" in dirty or "run" in dirty:
            self._draw_vram(model)
        if "progress" in dirty or "run" in dirty:
            self._draw_progress(model)
        if "log" in dirty:
            self._draw_log(model)
        self.redraws += 1
        return True

    def _draw_steps(self, model: LiveMetrics) -> None:
        x, y = model.loss.arrays()
        self.loss_raw.setData(x, y, connect="finite")
        x, y = model.loss_smooth.arrays()
        self.loss_smooth.setData(x, y, connect="finite")
        x, y = model.lr.arrays()
        self.lr.setData(x, y, connect="finite")

    def _draw_epochs(self, model: LiveMetrics) -> None:
        table = model.epochs
        e = np.asarray(table.epoch, dtype=float)
        self.train_epoch_loss.setData(e, np.asarray(table.train_loss, dtype=float), connect="finite")
        self.val_loss.setData(e, np.asarray(table.val_loss, dtype=float), connect="finite")
        self.f1.setData(e, np.asarray(table.val_f1, dtype=float), connect="finite")
        names = model.class_names or [f"class {i}" for i in range(max((len(r) for r in table.dice), default=0))]
        if names != self._dice_names:
            self._make_dice_curves(names, model.class_colors)
        matrix = table.dice_matrix(len(names))
        for i, curve in enumerate(self.dice_curves):
            curve.setData(e, matrix[:, i], connect="finite")

    def _make_dice_curves(self, names: list[str], colours: list[str]) -> None:
        for curve in self.dice_curves:
            self.dice_plot.removeItem(curve)
        self.dice_legend.clear()
        self.dice_curves = []
        for i, name in enumerate(names):
            colour = colours[i] if i < len(colours) else pg.intColor(i, hues=max(len(names), 3))
            if isinstance(colour, str) and colour.lower() == "#000000":
                colour = "#7a7a7a"  # background is black in overlays; grey reads on a white plot
            pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if i == 0 else Qt.PenStyle.SolidLine)
            self.dice_curves.append(self.dice_plot.plot(pen=pen, symbol="o", symbolSize=4, symbolBrush=colour,
                                                        name=name))
        self._dice_names = list(names)

    def _draw_vram(self, model: LiveMetrics) -> None:
        x, y = model.vram_used.arrays()
        self.vram_used.setData(x, y, connect="finite")
        ax, ay = model.vram_allocated.arrays()
        self.vram_alloc.setData(ax, ay, connect="finite")
        for line, value in ((self.peak_line, model.predicted_peak_gb), (self.capacity_line, model.vram_total_gb)):
            line.setVisible(value is not None)
            if value is not None:
                line.setValue(value)
        if len(x) == 0 and model.status != "idle":
            self.vram_note.setText("no GPU memory samples (CPU run)" if model.device in ("", "cpu") else
                                   "waiting for GPU memory samples")
        else:
            self.vram_note.setText("")

    def _draw_progress(self, model: LiveMetrics) -> None:
        self.progress.setValue(int(1000 * model.overall_progress))
        epochs = model.total_epochs or "?"
        per_epoch = model.steps_per_epoch
        step_in_epoch = int(round(model.epoch_progress * per_epoch)) if per_epoch else 0
        self.progress.setFormat(f"epoch {model.epoch or 0}/{epochs} · step {step_in_epoch}/{per_epoch or '?'} "
                                f"(total {model.step}) · %p%")
        parts = []
        if model.images_per_s is not None and math.isfinite(model.images_per_s):
            parts.append(f"{model.images_per_s:.1f} images/s")
        if model.status == "running":
            parts.append(f"ETA {format_duration(model.eta_s)}")
        if model.best_f1 is not None:
            parts.append(f"best F1 {model.best_f1:.3f}")
        if model.device:
            parts.append(model.device)
        self.stats_label.setText(" · ".join(parts))
        self.status_label.setText(status_text(model))

    def _draw_log(self, model: LiveMetrics) -> None:
        for entry in model.log_since(self._log_shown):
            colour = LOG_COLOURS.get(entry.level, style.TEXT)
            stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
            text = html.escape(entry.text).replace("\n", "<br>")
            self.log_view.appendHtml(f"<span style='color:{style.MUTED}'>{stamp}</span> "
                                     f"<span style='color:{colour}'>{text}</span>")
        self._log_shown = model.log_count


PHASES = {"checking_data": "Checking the dataset…", "starting": "Starting the training process…",
          "loading_model": "Loading the model…", "compiling": "Compiling the model…", "training": "Training",
          "validating": "Validating", "exporting": "Exporting the model bundle…"}


def status_text(model: LiveMetrics) -> str:
    if model.status == "running":
        return PHASES.get(model.phase, model.phase.replace("_", " ").capitalize() or "Running")
    if model.status == "finished":
        return "Finished"
    if model.status == "stopped":
        return "Stopped (checkpoint saved; Resume continues it)"
    if model.status == "failed":
        return "Failed: " + (model.failure.reason if model.failure else "unknown error")
    if model.status == "incomplete":
        return "Incomplete (the run ended without a final report)"
    if model.phase:
        return PHASES.get(model.phase, model.phase)
    return "No run yet"
