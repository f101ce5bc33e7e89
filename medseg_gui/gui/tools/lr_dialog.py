"""The learning-rate finder dialog: run the LR range test off the GUI thread, plot loss against LR on a
log axis with the suggestion marked, and "Use this LR" writes it into the configuration through the
app state (so the form, the diff against the recommendation and the next run all see it)."""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from medseg_gui.core.tools.lr_find import LrFindResult
from medseg_gui.gui import style
from medseg_gui.gui.plots import SciLogAxis, sci
from medseg_gui.gui.state import AppState
from medseg_gui.gui.workers import Task

Finder = Callable[..., LrFindResult]  # find_lr(config, num_training=, progress=, stop_event=)


def default_finder(config: Any, **kwargs: Any) -> LrFindResult:
    from medseg_gui.core.tools.lr_find import find_lr

    return find_lr(config, **kwargs)


def _takes_points(finder: Finder) -> bool:
    """Whether ``finder`` can report each point as it is measured (``on_point=``)."""
    try:
        params = inspect.signature(finder).parameters
    except (TypeError, ValueError):
        return False
    return "on_point" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


MIN_LR, MAX_LR = 1e-7, 1.0  # the search range (core.lr_find's defaults): the empty plot shows it


class LrFinderDialog(QDialog):
    def __init__(self, state: AppState, finder: Finder | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Find a learning rate")
        self.state = state
        self.finder = finder or default_finder
        self.result: LrFindResult | None = None
        self.job: Task | None = None
        self.resize(720, 520)
        layout = QVBoxLayout(self)
        intro = QLabel("Trains for a few dozen batches while the learning rate grows from 1e-7 to 1 and records "
                       "the loss (Lightning's LR range test). Nothing is saved and your run is not changed "
                       "until you press “Use this LR”.")
        intro.setWordWrap(True)
        intro.setProperty("role", "muted")
        layout.addWidget(intro)
        self.config_label = QLabel()
        layout.addWidget(self.config_label)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Batches:"))
        self.steps = QSpinBox()
        self.steps.setRange(10, 1000)
        self.steps.setValue(100)
        controls.addWidget(self.steps)
        self.run_button = QPushButton("Run")
        self.run_button.setProperty("primary", True)
        self.run_button.clicked.connect(self.run)
        controls.addWidget(self.run_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        controls.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        controls.addWidget(self.progress, 1)
        layout.addLayout(controls)

        self.plot = pg.PlotWidget(axisItems={"bottom": SciLogAxis("bottom")})
        self.plot.setBackground(style.CARD)
        self.plot.setLogMode(x=True, y=False)
        self.plot.setXRange(math.log10(MIN_LR), math.log10(MAX_LR), padding=0.02)  # readable before data
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self._points: deque[tuple[float, float]] = deque()  # filled from the search's thread
        self.plot.setLabel("bottom", "learning rate")
        self.plot.setLabel("left", "loss (smoothed)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.curve = self.plot.plot(pen=pg.mkPen(style.ACCENT, width=2))
        self.marker = self.plot.plot(pen=None, symbol="o", symbolSize=11, symbolBrush=style.ERROR)
        self.marker_line = pg.InfiniteLine(angle=90, pen=pg.mkPen(style.ERROR, style=Qt.PenStyle.DashLine))
        self.marker_line.setVisible(False)
        self.plot.addItem(self.marker_line)
        layout.addWidget(self.plot, 1)

        self.message = QLabel("Press Run to start.")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.use_button = QPushButton("Use this LR")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self.use_lr)
        buttons.addWidget(self.use_button)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self._show_config()
        state.config_changed.connect(lambda _c: self._show_config())

    def _show_config(self) -> None:
        tr, ds = self.state.config.training, self.state.config.dataset
        self.config_label.setText(f"SegFormer-{tr.variant}, batch {tr.batch_size}, {ds.image_size} px on "
                                  f"{ds.path!r}; current learning rate {sci(tr.lr)}")

    # ---- intents -------------------------------------------------------------------------------
    def run(self) -> None:
        if self.job is not None and self.job.is_running():
            return
        config = self.state.config.copy()
        steps = self.steps.value()
        self.result = None
        self.use_button.setEnabled(False)
        self.curve.setData([], [])
        self.marker.setData([], [])
        self.marker_line.setVisible(False)
        self._points.clear()
        self.plot.setXRange(math.log10(MIN_LR), math.log10(MAX_LR), padding=0.02)
        self.progress.setRange(0, 0)  # busy until the first batch: building takes a while
        self.message.setText("Building the model and the data loader…")
        extra = {"on_point": lambda lr, loss: self._points.append((lr, loss))} if _takes_points(self.finder) else {}
        job = Task(lambda progress, stop: self.finder(config, num_training=steps, progress=progress,
                                                         stop_event=stop, **extra), "lr-finder", self)
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self.show_result)
        job.failed.connect(lambda message, detail: self.message.setText(f"The search failed: {message}"))
        job.cancelled.connect(lambda: self.message.setText("Cancelled."))
        job.ended.connect(self._ended)
        self.job = job
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        job.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.message.setText("Cancelling after this batch…")

    def use_lr(self) -> None:
        if self.result is None or self.result.suggestion is None:
            return
        self.state.set_value("training.lr", float(self.result.suggestion))
        self.state.message.emit(f"Learning rate set to {sci(self.result.suggestion)} (from the LR finder)")
        self.message.setText(f"The learning rate is now {sci(self.result.suggestion)}.")

    # ---- results -------------------------------------------------------------------------------
    def _progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.message.setText(f"Batch {done} of {total}…")
        self._draw_points()

    def _draw_points(self) -> None:
        """The curve so far (the search reports each point as it goes)."""
        points = [(lr, loss) for lr, loss in list(self._points) if lr > 0 and math.isfinite(loss)]
        if points:
            self.curve.setData([p[0] for p in points], [p[1] for p in points])

    def _ended(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def show_result(self, result: LrFindResult) -> None:
        self.result = result
        points = [(lr, loss) for lr, loss in zip(result.lrs, result.losses)
                  if lr > 0 and math.isfinite(loss)]
        self.curve.setData([p[0] for p in points], [p[1] for p in points])
        if result.suggestion is not None:
            at = min(range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / result.suggestion)))
            loss = result.losses[at]
            if math.isfinite(loss):
                self.marker.setData([result.suggestion], [loss])
            self.marker_line.setPos(math.log10(result.suggestion))  # log-x axis: positions are log10
            self.marker_line.setVisible(True)
        self.progress.setValue(self.progress.maximum())
        self.message.setText(result.message[:1].upper() + result.message[1:] + ".")
        self.use_button.setEnabled(result.suggestion is not None)
        if result.suggestion is not None:
            self.use_button.setText(f"Use this LR ({sci(result.suggestion)})")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt naming)
        if self.job is not None and self.job.is_running():
            self.job.cancel()
            self.job.wait(60_000)
        super().closeEvent(event)
