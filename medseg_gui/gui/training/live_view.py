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
                               QStackedWidget, QVBoxLayout, QWidget)

from medseg_gui.core.live_metrics import LiveMetrics
from medseg_gui.core.words import format_duration
from medseg_gui.core.run_state import progress_words, resume_words
from medseg_gui.core.headline import HEADLINE_METRIC, HEADLINE_SHORT
from medseg_gui.gui import style
from medseg_gui.gui.plots import IntegerAxis, SciLogAxis, release_label_width, tight_log_range

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


def _series(text: str, colour: str) -> str:
    """A coloured word in a plot title: the title names the curves, so no legend box covers them."""
    return f"<span style='color:{colour}'>{html.escape(text)}</span>"


def _plot(title: str, x_label: str, y_label: str = "", *, integer_x: bool = False,
          log_y: bool = False) -> pg.PlotWidget:
    axes = {}
    if integer_x:
        axes["bottom"] = IntegerAxis("bottom")
    if log_y:
        axes["left"] = SciLogAxis("left")
    widget = pg.PlotWidget(background=None, axisItems=axes)
    widget.setMinimumHeight(130)
    # rows share the height by their stretch, not by size hints (a key under one plot made its row taller)
    widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
    item = widget.getPlotItem()
    item.setTitle(f"<span style='color:{style.TEXT};font-size:10pt'>{title}</span>")
    release_label_width(item.titleLabel)  # a long title must not widen the plot past its cell
    item.setLabel("bottom", x_label)
    if y_label:
        item.setLabel("left", y_label)
    for name in ("left", "bottom"):
        item.getAxis(name).enableAutoSIPrefix(False)  # no "(x0.001)" scale hidden in the axis label
    if log_y:
        item.setLogMode(y=True)
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
        self.loss_plot = _plot("Loss per step: " + _series("raw", "#8fb0ec") + " · "
                               + _series("smoothed", LOSS_SMOOTH), "step", "loss", integer_x=True)
        self.val_plot = _plot("Loss per epoch: " + _series("training", TRAIN_EPOCH_LOSS) + " · "
                              + _series("validation", VAL_LOSS), "epoch", "loss", integer_x=True)
        self.f1_plot = _plot(html.escape(HEADLINE_METRIC[:1].upper() + HEADLINE_METRIC[1:]), "epoch", "Dice",
                             integer_x=True)
        self.f1_plot.setToolTip(f"Validation {HEADLINE_METRIC}: the headline score, the same in the runs list, "
                                "the Viewer and the command line")
        self.dice_plot = _plot("Validation Dice per class", "epoch", "Dice", integer_x=True)
        # the classes' key sits under the plot (a legend box inside would cover the curves)
        self.dice_key = QLabel("")
        self.dice_key.setWordWrap(True)
        self.dice_key.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dice_key.setTextFormat(Qt.TextFormat.RichText)
        self.dice_box = QWidget()
        dice_col = QVBoxLayout(self.dice_box)
        dice_col.setContentsMargins(0, 0, 0, 0)
        dice_col.setSpacing(0)
        dice_col.addWidget(self.dice_plot, 1)
        dice_col.addWidget(self.dice_key)
        self.lr_plot = _plot("Learning rate", "step", "learning rate", integer_x=True, log_y=True)
        self.vram_plot = _plot("GPU memory: " + _series("used", VRAM_USED) + " · " + _series("tensors", VRAM_ALLOC),
                               "seconds since start", "GB")
        # CPU runs have no GPU memory to plot: a plain sentence instead of an empty plot with a clipped note
        self.vram_stack = QStackedWidget()
        self.vram_stack.addWidget(self.vram_plot)
        self.no_gpu_label = QLabel("No GPU — memory not tracked")
        self.no_gpu_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_gpu_label.setProperty("role", "muted")
        self.no_gpu_label.setMinimumHeight(130)
        self.vram_stack.addWidget(self.no_gpu_label)
        for i, plot in enumerate((self.loss_plot, self.val_plot, self.f1_plot, self.dice_box, self.lr_plot,
                                  self.vram_stack)):
            grid.addWidget(plot, i // 3, i % 3)
        for column in range(3):
            grid.setColumnStretch(column, 1)  # equal columns whatever the titles
        for row in range(2):
            grid.setRowStretch(row, 1)
        layout.addLayout(grid, 6)  # the plots first; the log keeps a few lines

        self.loss_raw = self.loss_plot.plot(pen=pg.mkPen(LOSS_RAW, width=1))
        self.loss_smooth = self.loss_plot.plot(pen=pg.mkPen(LOSS_SMOOTH, width=2))
        self.train_epoch_loss = self.val_plot.plot(pen=pg.mkPen(TRAIN_EPOCH_LOSS, width=2), symbol="o", symbolSize=5,
                                                   symbolBrush=TRAIN_EPOCH_LOSS)
        self.val_loss = self.val_plot.plot(pen=pg.mkPen(VAL_LOSS, width=2), symbol="o", symbolSize=5,
                                           symbolBrush=VAL_LOSS)
        self.f1 = self.f1_plot.plot(pen=pg.mkPen(F1, width=2), symbol="o", symbolSize=5, symbolBrush=F1)
        self.f1_plot.setYRange(0, 1, padding=0.02)
        self.dice_plot.setYRange(0, 1, padding=0.02)
        self.dice_curves: list[pg.PlotDataItem] = []
        self.lr = self.lr_plot.plot(pen=pg.mkPen(LR, width=2))
        self.vram_used = self.vram_plot.plot(pen=pg.mkPen(VRAM_USED, width=2))
        self.vram_alloc = self.vram_plot.plot(pen=pg.mkPen(VRAM_ALLOC, width=1))
        self.peak_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(PEAK, width=1.5, style=Qt.PenStyle.DashLine),
                                         label="predicted peak {value:.1f} GB",
                                         labelOpts={"position": 0.15, "color": PEAK})
        self.capacity_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(CAPACITY, width=1.5),
                                             label="card {value:.1f} GB",
                                             labelOpts={"position": 0.85, "color": CAPACITY})
        for line in (self.peak_line, self.capacity_line):
            line.setVisible(False)
            self.vram_plot.addItem(line, ignoreBounds=False)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText("Messages from the run appear here.")
        self.log_view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.log_view.setMinimumHeight(70)
        layout.addWidget(self.log_view, 1)
        self._log_shown = 0
        self._dice_names: list[str] = []
        self._dice_key_html = ""
        self.clear()

    # ---- drawing -------------------------------------------------------------------------------
    def clear(self) -> None:
        for curve in (self.loss_raw, self.loss_smooth, self.train_epoch_loss, self.val_loss, self.f1, self.lr,
                      self.vram_used, self.vram_alloc):
            curve.setData([], [])
        for curve in self.dice_curves:
            self.dice_plot.removeItem(curve)
        self.dice_curves.clear()
        self.dice_key.setText("")
        self._dice_names = []
        for plot in (self.loss_plot, self.val_plot, self.f1_plot, self.dice_plot, self.lr_plot, self.vram_plot):
            plot.getPlotItem().enableAutoRange()  # a new run must not inherit the last run's axes
        for plot in (self.f1_plot, self.dice_plot):
            plot.setYRange(0, 1, padding=0.02)
        self.lr_plot.setYRange(-5, -2, padding=0)  # 1e-5 … 1e-2 until the run's rates arrive
        self.vram_stack.setCurrentWidget(self.vram_plot)
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
        positive = np.isfinite(y) & (y > 0)  # a log axis cannot show 0 (a warm-up's first step)
        self.lr.setData(x[positive], y[positive], connect="finite")
        span = tight_log_range(y[positive])
        if span is not None:
            self.lr_plot.setYRange(*span, padding=0)

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
        self.dice_key.setText(self._dice_key_html if len(e) else "")  # no key before there is a curve


    def _make_dice_curves(self, names: list[str], colours: list[str]) -> None:
        for curve in self.dice_curves:
            self.dice_plot.removeItem(curve)
        self.dice_curves = []
        key = []
        for i, name in enumerate(names):
            colour = colours[i] if i < len(colours) else pg.intColor(i, hues=max(len(names), 3))
            if isinstance(colour, str) and colour.lower() == "#000000":
                colour = "#7a7a7a"  # background is black in overlays; grey reads on a white plot
            pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if i == 0 else Qt.PenStyle.SolidLine)
            self.dice_curves.append(self.dice_plot.plot(pen=pen, symbol="o", symbolSize=4, symbolBrush=colour,
                                                        name=name))  # named for tests and tooltips; no legend box
            hex_colour = colour if isinstance(colour, str) else pg.mkColor(colour).name()
            key.append(f"<span style='color:{hex_colour}'>{'╌' if i == 0 else '━'}</span>&nbsp;{html.escape(name)}")
        self._dice_key_html = " &nbsp; ".join(key)
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
        cpu_run = len(x) == 0 and model.status != "idle" and model.device.lower() in ("", "cpu")
        self.vram_stack.setCurrentWidget(self.no_gpu_label if cpu_run else self.vram_plot)

    def _draw_progress(self, model: LiveMetrics) -> None:
        self.progress.setValue(int(1000 * model.overall_progress))
        epochs = model.total_epochs or "?"
        per_epoch = model.steps_per_epoch
        step_in_epoch = int(round(model.epoch_progress * per_epoch)) if per_epoch else 0
        self.progress.setFormat(f"epoch {model.epoch or 0}/{epochs} · step {step_in_epoch}/{per_epoch or '?'} "
                                f"(total {model.step}) · %p%")
        self.tick(model)
        self.status_label.setText(status_text(model))

    def tick(self, model: LiveMetrics) -> None:
        """Refresh the speed/ETA line only (cheap; the tab calls it on every drain so the ETA counts
        down through validation, when no step events arrive)."""
        parts = []
        if model.images_per_s is not None and math.isfinite(model.images_per_s):
            parts.append(f"{model.images_per_s:.1f} images/s")
        if model.status == "running":
            parts.append(f"ETA {format_duration(model.remaining_s())}")
        if model.best_f1 is not None:
            parts.append(f"best {HEADLINE_SHORT} {model.best_f1:.3f}")
        if model.device:
            parts.append(model.device)
        text = " · ".join(parts)
        if text != self.stats_label.text():
            self.stats_label.setText(text)
        self.stats_label.setToolTip(f"{HEADLINE_SHORT}: {HEADLINE_METRIC}" if model.best_f1 is not None else "")

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
        done = model.finished.epochs_done if model.finished is not None else len(model.epochs.epoch)
        steps = model.finished.steps_done if model.finished is not None and model.finished.steps_done else model.step
        return (f"Stopped after {progress_words(done, steps, model.epoch, True)} (checkpoint saved; "
                f"{resume_words(done)})")
    if model.status == "failed":
        return "Failed: " + (model.failure.reason if model.failure else "unknown error")
    if model.status == "incomplete":
        return "Incomplete (the run ended without a final report)"
    if model.phase:
        return PHASES.get(model.phase, model.phase)
    return "No run yet"
