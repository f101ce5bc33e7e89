"""The Hardware page: one live card per GPU (or a CPU-mode card), the recommendation and a what-if.

Cards only display what ``AppState`` holds; the poller in ``workers.py`` feeds the state, the
recommendation comes from core through the state, and the buttons here send intents back to it.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QDoubleSpinBox, QFrame, QGridLayout, QHBoxLayout,
                               QHeaderView, QLabel, QPushButton, QScrollArea, QSizePolicy, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from medseg_gui.core.gpu_identity import GpuSelectionError, by_cuda_index, choose_gpus, gpu_label, short_uuid
from medseg_gui.core.hardware import GpuInfo, HardwareSnapshot
from medseg_gui.core.planning.recommend import NO_GPU_WARNING, Recommendation
from medseg_gui.core.planning.tiers import TIERS
from medseg_gui.core.words import plural
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState

HISTORY_SECONDS = 300  # the sparklines show the last five minutes


def fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    """A reading for display; missing readings are "n/a", never 0 (which would be a lie)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} {unit}".strip() if unit else text


def label(text: str = "", role: str | None = None, wrap: bool = False) -> QLabel:
    widget = QLabel(text)
    if role:
        widget.setProperty("role", role)
    widget.setWordWrap(wrap)
    widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return widget


def swatch(color: str) -> str:
    return f"<span style='color:{color}; font-size:large'>&#9632;</span>"


class StackedBar(QWidget):
    """A horizontal bar of coloured segments (VRAM: this app / other programs / free; RAM: used / free)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._segments: list[tuple[float, str]] = []
        self._total = 0.0
        self.setMinimumHeight(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_segments(self, total: float | None, segments: list[tuple[float | None, str]]) -> None:
        self._total = float(total or 0.0)
        self._segments = [(max(0.0, float(v or 0.0)), c) for v, c in segments]
        self.update()

    def segments(self) -> list[tuple[float, str]]:
        return list(self._segments)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(200, 14)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = rect.height() / 2
        clip = QPainterPath()
        clip.addRoundedRect(rect, radius, radius)
        painter.setClipPath(clip)
        painter.fillRect(rect, QColor(style.FREE))
        if self._total > 0:
            x = rect.left()
            for value, color in self._segments:
                width = rect.width() * min(value, self._total) / self._total
                painter.fillRect(QRectF(x, rect.top(), width, rect.height()), QColor(color))
                x += width
        painter.end()


class Sparkline(QWidget):
    """A caption, the current value and a small filled pyqtgraph curve over the last few minutes."""

    def __init__(self, title: str, color: str, y_range: tuple[float, float] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self._y_range = y_range
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        top = QHBoxLayout()
        self.title = label(title, "caption")
        self.value = label("n/a", "statValue")
        top.addWidget(self.title)
        top.addStretch(1)
        top.addWidget(self.value)
        layout.addLayout(top)
        self.plot = pg.PlotWidget(background=None)
        self.plot.setFixedHeight(46)
        self.plot.setFrameShape(QFrame.Shape.NoFrame)
        item = self.plot.getPlotItem()
        for axis in ("left", "bottom"):
            item.hideAxis(axis)
        item.setMouseEnabled(False, False)
        item.setMenuEnabled(False)
        item.hideButtons()
        item.layout.setContentsMargins(0, 0, 0, 0)
        item.setXRange(-HISTORY_SECONDS, 0, padding=0)
        if y_range is not None:
            item.setYRange(*y_range, padding=0.05)
        else:
            item.enableAutoRange(axis="y")
        fill = QColor(color)
        fill.setAlpha(45)
        self.curve = item.plot(pen=pg.mkPen(color, width=1.6), brush=fill,
                               fillLevel=y_range[0] if y_range else 0, connect="finite")
        baseline = QColor(style.BORDER)
        item.addItem(pg.InfiniteLine(pos=y_range[0] if y_range else 0, angle=0, pen=pg.mkPen(baseline)))
        layout.addWidget(self.plot)

    def set_range(self, y_range: tuple[float, float]) -> None:
        if y_range != self._y_range:
            self._y_range = y_range
            self.plot.getPlotItem().setYRange(*y_range, padding=0.05)

    def set_data(self, seconds_ago: np.ndarray, values: np.ndarray, text: str) -> None:
        self.curve.setData(seconds_ago, values)
        self.value.setText(text)


class History:
    """Fixed-length samples (time, util, VRAM used, temperature) for one GPU."""

    def __init__(self, seconds: int = HISTORY_SECONDS):
        self._samples: deque[tuple[float, float, float, float]] = deque(maxlen=seconds + 5)
        self._seconds = seconds

    def add(self, gpu: GpuInfo, now: float) -> None:
        nan = float("nan")
        self._samples.append((now, nan if gpu.utilization_pct is None else gpu.utilization_pct,
                              nan if gpu.used_gb is None else gpu.used_gb,
                              nan if gpu.temperature_c is None else gpu.temperature_c))

    def arrays(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        data = np.array(self._samples, dtype=float).reshape(-1, 4)
        keep = data[:, 0] >= now - self._seconds
        data = data[keep]
        return data[:, 0] - now, data[:, 1], data[:, 2], data[:, 3]

    def __len__(self) -> int:
        return len(self._samples)


class GpuCard(QFrame):
    """Name, driver, compute capability, the VRAM bar, live readings, 5-minute sparklines, and a tick
    box: train on this GPU."""

    use_toggled = Signal(str, bool)  # the card's UUID, ticked

    def __init__(self, gpu: GpuInfo, parent: QWidget | None = None):
        super().__init__(parent)
        self.setProperty("card", True)
        self.uuid = gpu.uuid or f"{gpu.cuda_index}"
        self.history = History()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 16)
        layout.setSpacing(10)

        head = QHBoxLayout()
        self.title = label("", "cardTitle")
        self.title.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        self.badge = label("", "pill")
        head.addWidget(self.title)
        head.addStretch(1)
        self.use = QCheckBox("Train on this GPU")
        self.use.setToolTip("Tick the GPUs to train on; the recommendation plans for them (the batch on each GPU "
                            "is sized for the one with the least free memory).")
        self.use.toggled.connect(lambda on: self.use_toggled.emit(self.uuid, on))
        head.addWidget(self.use)
        head.addWidget(self.badge)
        layout.addLayout(head)
        self.details = label("", "muted", wrap=True)
        layout.addWidget(self.details)

        self.vram_total, self.vram_bar, self.vram_legend = _bar_block(layout, "Video memory")

        stats = QGridLayout()
        stats.setHorizontalSpacing(24)
        self.stat_values: dict[str, QLabel] = {}
        for col, (key, caption) in enumerate((("util", "Utilisation"), ("temp", "Temperature"),
                                              ("power", "Power"), ("clock", "SM clock"))):
            stats.addWidget(label(caption, "caption"), 0, col)
            value = label("n/a", "statValue")
            value.setFont(style.scaled_font(self.font(), 1.25, bold=True))
            self.stat_values[key] = value
            stats.addWidget(value, 1, col)
        layout.addLayout(stats)

        sparks = QHBoxLayout()
        sparks.setSpacing(18)
        self.spark_util = Sparkline("Utilisation, 5 min", style.UTIL, (0, 100))
        self.spark_vram = Sparkline("VRAM used, 5 min", style.VRAM, (0, max(1.0, gpu.total_gb or 1.0)))
        self.spark_temp = Sparkline("Temperature, 5 min", style.TEMP, (20, 100))
        for spark in (self.spark_util, self.spark_vram, self.spark_temp):
            sparks.addWidget(spark, 1)
        layout.addLayout(sparks)
        self.notes = label("", "warning", wrap=True)
        self.notes.hide()
        layout.addWidget(self.notes)

    def update_gpu(self, gpu: GpuInfo, snapshot: HardwareSnapshot, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.title.setText(f"{gpu_label(gpu)} · {gpu.name}")
        self.use.setEnabled(gpu.cuda_index is not None)
        if gpu.cuda_index is None:
            self.use.setToolTip("CUDA cannot see this GPU (CUDA_VISIBLE_DEVICES hides it), so it cannot train here.")
        cc = gpu.compute_capability
        self.badge.setText("bf16" if gpu.supports_bf16 else ("fp16" if cc else "n/a"))
        self.badge.setToolTip("Native bf16 (compute capability 8.0 or newer)" if gpu.supports_bf16 else
                              "No native bf16: mixed precision uses fp16 with loss scaling")
        parts = [f"Driver {snapshot.driver_version or 'n/a'}"]
        if snapshot.cuda_driver_version:
            parts.append(f"CUDA {snapshot.cuda_driver_version}")
        parts.append(f"Compute capability {cc[0]}.{cc[1]}" if cc else "Compute capability n/a")
        if gpu.memory_bandwidth_gbs:
            parts.append(f"~{gpu.memory_bandwidth_gbs:.0f} GB/s memory")
        parts.append(f"nvidia-smi #{gpu.index}")
        parts.append(short_uuid(gpu.uuid))
        self.details.setText(" · ".join(parts))
        self.details.setToolTip(gpu.uuid or "")


        ours = gpu.used_by_this_process_gb or 0.0
        others = gpu.used_by_others_gb
        self.vram_total.setText(f"{fmt(gpu.used_gb, digits=1)} / {fmt(gpu.total_gb, 'GB', 1)}")
        self.vram_bar.set_segments(gpu.total_gb, [(ours, style.OURS), (others, style.OTHERS)])
        self.vram_legend.setText(
            f"{swatch(style.OURS)} This app {fmt(ours, 'GB', 1)} &nbsp;&nbsp; "
            f"{swatch(style.OTHERS)} Other programs {fmt(others, 'GB', 1)} &nbsp;&nbsp; "
            f"{swatch(style.FREE)} Free {fmt(gpu.free_gb, 'GB', 1)}")

        self.stat_values["util"].setText(fmt(gpu.utilization_pct, "%"))
        self.stat_values["temp"].setText(fmt(gpu.temperature_c, "°C"))
        power = fmt(gpu.power_w, digits=0)
        self.stat_values["power"].setText(
            f"{power} / {fmt(gpu.power_limit_w, 'W')}" if gpu.power_limit_w else fmt(gpu.power_w, "W"))
        self.stat_values["clock"].setText(fmt(gpu.sm_clock_mhz, "MHz"))

        self.history.add(gpu, now)
        ago, util, vram, temp = self.history.arrays(now)
        self.spark_vram.set_range((0, max(1.0, gpu.total_gb or float(np.nanmax(vram, initial=1.0)))))
        self.spark_util.set_data(ago, util, fmt(gpu.utilization_pct, "%"))
        self.spark_vram.set_data(ago, vram, fmt(gpu.used_gb, "GB", 1))
        self.spark_temp.set_data(ago, temp, fmt(gpu.temperature_c, "°C"))

        notes = []
        if gpu.mig_enabled:
            notes.append("MIG is enabled: figures are for the whole card, not your slice.")
        if gpu.throttle_reasons:
            notes.append("Clocks reduced: " + ", ".join(gpu.throttle_reasons) + ".")
        self.notes.setText(" ".join(notes))
        self.notes.setVisible(bool(notes))

    def set_used(self, used: bool) -> None:
        """Show whether this card is one the run will train on (no signal: the state already knows)."""
        self.use.blockSignals(True)
        self.use.setChecked(used)
        self.use.blockSignals(False)


class CpuCard(QFrame):
    """Shown when no GPU can be read: says why, and what the CPU and RAM offer instead."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setProperty("card", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 16)
        layout.setSpacing(10)
        head = QHBoxLayout()
        title = label("CPU mode", "cardTitle")
        title.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(label("No usable GPU", "cpuPill"))
        layout.addLayout(head)
        self.reason = label("", "warning", wrap=True)
        layout.addWidget(self.reason)
        self.cpu = label("", "muted", wrap=True)
        layout.addWidget(self.cpu)
        self.ram_total, self.ram_bar, self.ram_legend = _bar_block(layout, "Memory (RAM)")

    def update_snapshot(self, snapshot: HardwareSnapshot) -> None:
        reason = snapshot.nvml_error or "No NVIDIA GPU was found."
        self.reason.setText(f"{reason[0].upper()}{reason[1:]}")
        self.cpu.setText(f"{snapshot.cpu_name} · {plural(snapshot.cpu_count, 'core')} · {snapshot.os_name}")
        total, avail = snapshot.ram_total_gb, snapshot.ram_available_gb
        used = None if total is None or avail is None else total - avail
        self.ram_total.setText(f"{fmt(used, digits=1)} / {fmt(total, 'GB', 1)}")
        self.ram_bar.set_segments(total, [(used, style.OTHERS)])
        self.ram_legend.setText(f"{swatch(style.OTHERS)} In use {fmt(used, 'GB', 1)} &nbsp;&nbsp; "
                                f"{swatch(style.FREE)} Available {fmt(avail, 'GB', 1)}")


class RecommendationCard(QFrame):
    """The recommended tier, its key settings, why, what to watch out for, and a what-if control."""

    SETTINGS = (("Model", "model"), ("Batch", "batch"), ("Image size", "image"), ("Epochs", "epochs"),
                ("Learning rate", "lr"), ("LR scheduler", "scheduler"), ("Precision", "precision"),
                ("Device", "device"), ("Data workers", "workers"))

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.setProperty("card", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 16)
        layout.setSpacing(10)

        head = QHBoxLayout()
        title = label("Recommended configuration", "cardTitle")
        title.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        head.addWidget(title)
        head.addStretch(1)
        layout.addLayout(head)
        tier_row = QHBoxLayout()
        self.tier = label("", "pill")
        tier_row.addWidget(self.tier)
        tier_row.addStretch(1)
        layout.addLayout(tier_row)
        self.source = label("Waiting for the first hardware reading…", "muted", wrap=True)
        layout.addWidget(self.source)

        what_if = QHBoxLayout()
        self.vram = QDoubleSpinBox()
        self.vram.setRange(0.0, 512.0)
        self.vram.setDecimals(1)
        self.vram.setSingleStep(1.0)
        self.vram.setSpecialValueText("this computer")  # shown at 0: plan for the cards (or CPU) here
        self.vram.setSuffix(" GB free")
        self.vram.setValue(0.0)
        self.vram.setKeyboardTracking(False)
        self.vram.setToolTip("Plan for another card (a server, a colleague's machine, a MIG slice) with this much "
                             "free memory. Set it back to the lowest value to plan for this computer again.")
        what_if.addWidget(label("Plan for a card of", "caption"))
        what_if.addWidget(self.vram)
        what_if.addStretch(1)
        layout.addLayout(what_if)

        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(16)
        self.grid.setVerticalSpacing(6)
        self.values: dict[str, QLabel] = {}
        for i, (caption, key) in enumerate(self.SETTINGS):
            row, col = divmod(i, 3)
            box = QVBoxLayout()
            box.setSpacing(0)
            box.addWidget(label(caption, "caption"))
            value = label("–", "statValue")
            self.values[key] = value
            box.addWidget(value)
            self.grid.addLayout(box, row, col)
        layout.addLayout(self.grid)

        layout.addWidget(label("Why", "cardTitle"))
        self.reasons = label("", wrap=True)
        self.reasons.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.reasons)
        self.warnings = label("", "warning", wrap=True)
        self.warnings.setTextFormat(Qt.TextFormat.RichText)
        self.warnings.hide()
        layout.addWidget(self.warnings)

        self.status = label("", "muted", wrap=True)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.use_button = QPushButton("Use this configuration")
        self.use_button.setProperty("primary", True)
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(state.use_recommendation)
        buttons.addWidget(self.use_button)
        layout.addLayout(buttons)

        self.vram.valueChanged.connect(self._what_if_edited)
        state.recommendation_changed.connect(self.show_recommendation)
        state.config_changed.connect(lambda _c: self._update_button())
        state.what_if_changed.connect(self._show_what_if)
        self._show_what_if(state.what_if_vram_gb)
        self.show_recommendation(state.recommendation)

    # widget -> state
    def _what_if_edited(self, *_args) -> None:
        value = float(self.vram.value())
        self.state.set_what_if(value if value > 0 else None)

    # state -> widget
    def _show_what_if(self, vram_gb: float | None) -> None:
        self.vram.blockSignals(True)
        self.vram.setValue(vram_gb or 0.0)
        self.vram.blockSignals(False)

    def show_recommendation(self, rec: Recommendation | None) -> None:
        if rec is None:
            self.tier.setText("…")
            self._update_button()
            return
        tr, ds = rec.config.training, rec.config.dataset
        self.tier.setText(rec.tier.label)
        self.tier.setToolTip(f"Typical cards: {rec.tier.example_gpus}")
        if rec.vram_source == "override":
            self.source.setText(f"Planned for a card with {rec.free_gb or 0:g} GB free (what-if).")
        elif len(rec.gpus) > 1:
            names = ", ".join(gpu_label(g) for g in rec.gpus)
            self.source.setText(f"Planned for {len(rec.gpus)} GPUs ({names}); the batch on each is sized for "
                                f"{gpu_label(rec.gpu)} with {fmt(rec.free_gb, 'GB', 1)} free; budget "
                                f"{fmt(rec.budget_gb, 'GB', 1)} per GPU.")
        elif rec.gpu is not None:
            self.source.setText(f"Planned for {gpu_label(rec.gpu)} ({rec.gpu.name}) with "
                                f"{fmt(rec.free_gb, 'GB', 1)} free; budget {fmt(rec.budget_gb, 'GB', 1)}.")
        else:
            self.source.setText("Planned for the CPU.")
        batch = str(tr.batch_size)
        if len(rec.gpus) > 1:
            batch += f" × {len(rec.gpus)} GPUs"
        if tr.accumulate_grad_batches > 1:
            batch += f" × {tr.accumulate_grad_batches} accum."
        values = {"model": f"SegFormer-{tr.variant}", "batch": batch, "image": f"{ds.image_size} px",
                  "epochs": str(tr.epochs), "lr": f"{tr.lr:g}", "scheduler": "on" if tr.use_scheduler else "off",
                  "precision": tr.precision,
                  "device": (f"{len(rec.gpus)} GPUs" if len(rec.gpus) > 1
                             else tr.accelerator.upper() if tr.accelerator != "auto" else "auto"),
                  "workers": str(tr.num_workers)}
        for key, value in values.items():
            self.values[key].setText(value)
        if rec.predicted_peak_gb is not None:
            self.values["batch"].setToolTip(f"Predicted peak {rec.predicted_peak_gb:.1f} GB")
        self.reasons.setText("<ul style='margin-left:-20px'>" + "".join(
            f"<li style='margin-bottom:3px'>{html.escape(r)}</li>" for r in rec.reasons) + "</ul>")
        # The CPU card beside this one already shows why there is no GPU: say it once.
        shown = [NO_GPU_WARNING if w.startswith(NO_GPU_WARNING) else w for w in rec.warnings]
        self.warnings.setText("<br>".join(f"⚠ {html.escape(w)}" for w in shown))
        self.warnings.setVisible(bool(rec.warnings))
        self._update_button()

    def _update_button(self) -> None:
        rec = self.state.recommendation
        differs = bool(self.state.differences()) if rec is not None else False
        self.use_button.setEnabled(rec is not None and differs)
        if rec is None:
            self.status.setText("")
        elif differs:
            count = len(self.state.differences())
            self.status.setText(f"Your configuration differs in {count} setting{'s' if count != 1 else ''}.")
        else:
            self.status.setText("✓ Your configuration matches this recommendation.")


class TierTable(QFrame):
    """The starting presets by free VRAM, with the tier of the current recommendation selected."""

    COLUMNS = ("Tier", "Free VRAM", "Model", "Batch", "Image", "Epochs", "Typical cards")

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setProperty("card", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 12)
        layout.setSpacing(8)
        title = label("Tiers", "cardTitle")
        title.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        layout.addWidget(title)
        layout.addWidget(label("Starting presets by free VRAM; the recommendation then sizes the batch to "
                               "what actually fits.", "muted", wrap=True))
        self.table = QTableWidget(len(TIERS), len(self.COLUMNS))
        self.table.setObjectName("tiers")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for col in range(len(self.COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(self.COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        for row, tier in enumerate(TIERS):
            batch = f"{tier.batch_size}" + (f" × {tier.accumulate_grad_batches}"
                                            if tier.accumulate_grad_batches > 1 else "")
            cells = (tier.title, tier.range_text, tier.variant, batch, f"{tier.image_size} px",
                     str(tier.epochs), tier.example_gpus)
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(text)
                self.table.setItem(row, col, cell)
        # The typical cards wrap onto a second line rather than being cut off with "…".
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.sectionResized.connect(lambda *_: self._fit_height())
        self.table.verticalHeader().sectionResized.connect(lambda *_: self._fit_height())
        layout.addWidget(self.table)
        self._fit_height()
        state.recommendation_changed.connect(self.show_recommendation)
        self.show_recommendation(state.recommendation)

    def _fit_height(self) -> None:
        """The table shows every row in full (the page scrolls, not the table)."""
        rows = self.table.verticalHeader().length()
        self.table.setFixedHeight(rows + self.table.horizontalHeader().sizeHint().height()
                                  + 2 * self.table.frameWidth() + 2)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._fit_height()

    def show_recommendation(self, rec: Recommendation | None) -> None:
        self.table.clearSelection()
        if rec is not None:
            self.table.selectRow(next(i for i, t in enumerate(TIERS) if t.name == rec.tier.name))

    def selected_tier(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return TIERS[rows[0].row()].name if rows else None


class HardwarePanel(QWidget):
    """The page: cards on the left (one per GPU, or CPU mode), the recommendation on the right."""

    def __init__(self, state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page")
        self.state = state
        self.gpu_cards: dict[tuple, GpuCard] = {}
        self.cpu_card: CpuCard | None = None
        self._gpu_key: tuple | None = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 16)
        outer.setSpacing(12)
        title = label("Hardware", "pageTitle")
        title.setFont(style.scaled_font(self.font(), 1.6, bold=True))
        outer.addWidget(title)
        self.subtitle = label("Reading the GPUs…", "muted")
        outer.addWidget(self.subtitle)

        body = QHBoxLayout()
        body.setSpacing(16)
        left = QScrollArea()
        left.setWidgetResizable(True)
        left.setFrameShape(QFrame.Shape.NoFrame)
        holder = QWidget()
        self.cards = QVBoxLayout(holder)
        self.cards.setContentsMargins(0, 0, 4, 0)
        self.cards.setSpacing(14)
        self.waiting = label("Reading hardware…", "muted")
        self.cards.addWidget(self.waiting)
        self.tiers = TierTable(state)
        self.cards.addWidget(self.tiers)
        self.cards.addStretch(1)
        left.setWidget(holder)
        body.addWidget(left, 3)

        right = QScrollArea()
        right.setWidgetResizable(True)
        right.setFrameShape(QFrame.Shape.NoFrame)
        right_holder = QWidget()
        right_box = QVBoxLayout(right_holder)
        right_box.setContentsMargins(0, 0, 4, 0)
        self.recommendation = RecommendationCard(state)
        right_box.addWidget(self.recommendation)
        self._right_box = right_box
        right_box.addStretch(1)
        right.setWidget(right_holder)
        right.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        right.setMinimumWidth(420)
        body.addWidget(right, 2)
        outer.addLayout(body, 1)

        state.snapshot_changed.connect(self.show_snapshot)
        state.config_changed.connect(lambda _c: self._show_used())
        state.recommendation_changed.connect(lambda _r: self._show_used())
        if state.snapshot is not None:
            self.show_snapshot(state.snapshot)

    def add_below_recommendation(self, widget: QWidget) -> None:
        """Put a card (the speed card) under the recommendation it belongs to."""
        self._right_box.insertWidget(self._right_box.indexOf(self.recommendation) + 1, widget)

    def show_snapshot(self, snapshot: HardwareSnapshot) -> None:
        self.waiting.hide()
        key = tuple((g.index, g.uuid, g.name) for g in snapshot.gpus)
        if key != self._gpu_key:
            self._rebuild(snapshot, key)
        now = time.monotonic()
        if snapshot.gpus:
            for gpu in snapshot.gpus:
                self.gpu_cards[(gpu.index, gpu.uuid, gpu.name)].update_gpu(gpu, snapshot, now)
            count = len(snapshot.gpus)
            self.subtitle.setText(f"{count} NVIDIA GPU{'s' if count > 1 else ''} · driver "
                                  f"{snapshot.driver_version or 'n/a'} · {snapshot.cpu_count} CPU cores · "
                                  f"{fmt(snapshot.ram_total_gb, 'GB', 0)} RAM · updated every second")
        else:
            assert self.cpu_card is not None
            self.cpu_card.update_snapshot(snapshot)
            self.subtitle.setText(f"No usable GPU · {snapshot.cpu_count} CPU cores · "
                                  f"{fmt(snapshot.ram_total_gb, 'GB', 0)} RAM · updated every second")

    def _rebuild(self, snapshot: HardwareSnapshot, key: tuple) -> None:
        for card in list(self.gpu_cards.values()) + ([self.cpu_card] if self.cpu_card else []):
            self.cards.removeWidget(card)
            card.deleteLater()
        self.gpu_cards.clear()
        self.cpu_card = None
        insert_at = self.cards.indexOf(self.tiers)  # hardware cards go above the tier table
        if snapshot.gpus:
            for offset, gpu in enumerate(by_cuda_index(snapshot.gpus)):  # GPU 0, GPU 1, … as training numbers them
                card = GpuCard(gpu)
                card.use_toggled.connect(self._use_toggled)
                self.gpu_cards[(gpu.index, gpu.uuid, gpu.name)] = card
                self.cards.insertWidget(insert_at + offset, card)
        else:
            self.cpu_card = CpuCard()
            self.cards.insertWidget(insert_at, self.cpu_card)
        self._gpu_key = key
        self._show_used()

    def used_gpus(self) -> list[GpuInfo]:
        """The cards the run will train on: the configuration's GPUs, or the recommendation's choice."""
        snapshot = self.state.snapshot
        if snapshot is None or not snapshot.gpus:
            return []
        tr = self.state.config.training
        try:
            if tr.gpus:
                return choose_gpus(snapshot, tr.gpus, len(tr.gpus))
        except GpuSelectionError:
            return []
        rec = self.state.recommendation
        return list(rec.gpus) if rec is not None else []

    def _show_used(self) -> None:
        used = {g.uuid for g in self.used_gpus()}
        for (_index, uuid, _name), card in self.gpu_cards.items():
            card.set_used(uuid in used)

    def _use_toggled(self, uuid: str, on: bool) -> None:
        """Tick = train on this card too; the choice goes into the configuration (training.gpus)."""
        snapshot = self.state.snapshot
        order = {g.uuid: g.cuda_index for g in snapshot.gpus} if snapshot is not None else {}
        chosen = [g.uuid for g in self.used_gpus() if g.uuid and g.uuid != uuid]
        if on:
            chosen.append(uuid)
        chosen.sort(key=lambda u: order.get(u) if order.get(u) is not None else 1 << 30)
        self.state.set_training_gpus(chosen)


def _bar_block(layout: QVBoxLayout, caption: str) -> tuple[QLabel, "StackedBar", QLabel]:
    """A captioned stacked bar with its total on the right and a legend below (VRAM, RAM)."""
    head = QHBoxLayout()
    head.addWidget(label(caption, "caption"))
    head.addStretch(1)
    total = label("", "statValue")
    head.addWidget(total)
    layout.addLayout(head)
    bar = StackedBar()
    layout.addWidget(bar)
    legend = label("", "muted")
    legend.setTextFormat(Qt.TextFormat.RichText)
    layout.addWidget(legend)
    return total, bar, legend
