"""The pre-flight checklist widget: green/amber/red rows with the fix, and the gate before Start.

The checks themselves are ``core.preflight`` (pure functions of gathered facts); gathering imports
torch, reads NVML and checks the dataset, which takes seconds, so it runs in a ``Task``. The last
report is kept with the configuration it was made for: ``report_for(config)`` answers only for that
exact configuration, so an edit never hides behind an old green list.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QToolButton, QVBoxLayout,
                               QWidget)

from medseg_gui.core import config as cfg
from medseg_gui.core.tools.preflight import CheckItem, PreflightReport
from medseg_gui.core.run_state import plural
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState
from medseg_gui.gui.workers import Task

Checker = Callable[[cfg.RunConfig], PreflightReport]

COLOURS = {"ok": (style.OK_TEXT, style.OK_BG, "✓"), "warn": (style.WARN_TEXT, style.WARN_BG, "!"),
           "fail": (style.ERROR, style.ERROR_BG, "✗")}


def default_checker(config: cfg.RunConfig) -> PreflightReport:
    from medseg_gui.core.tools.preflight import preflight

    return preflight(config)


class CheckRow(QFrame):
    """One item: a coloured mark, the title and what was found, and the fix when it is not green."""

    def __init__(self, item: CheckItem, parent: QWidget | None = None):
        super().__init__(parent)
        self.item = item
        fg, bg, mark = COLOURS.get(item.status, COLOURS["warn"])
        if not getattr(item, "applies", True):  # nothing to check here: grey "n/a", not a green tick
            fg, bg, mark = style.MUTED, "#eef0f3", "–"
        self.setObjectName(f"check_{item.id}")
        self.setProperty("status", item.status)
        self.setStyleSheet(f"QFrame#check_{item.id} {{background:{bg}; border-radius:4px}}")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 5, 8, 5)
        self.mark = QLabel(mark)
        self.mark.setStyleSheet(f"color:{fg}; font-weight:bold")
        self.mark.setFixedWidth(16)
        row.addWidget(self.mark, 0, Qt.AlignmentFlag.AlignTop)
        text = f"<b>{html.escape(item.title)}</b> — {html.escape(item.detail)}"
        if item.fix and item.status != "ok":
            text += f"<br><span style='color:{fg}'>Fix: {html.escape(item.fix)}</span>"
        self.text = QLabel(text)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setStyleSheet(f"color:{style.TEXT}")
        row.addWidget(self.text, 1)


def summary_text(report: PreflightReport) -> str:
    """One line: "Ready · 1 warning", "2 problems to fix · 1 warning", "Ready · all clear"."""
    fails = sum(1 for i in report.items if i.status == "fail")
    warns = sum(1 for i in report.items if i.status == "warn")
    head = f"{plural(fails, 'problem')} to fix before training" if fails else "Ready"
    tail = plural(warns, "warning") if warns else ("" if fails else "all clear")
    return f"{head} · {tail}" if tail else head


class PreflightChecklist(QWidget):
    """The checklist for the state's configuration. ``check()`` gathers in the background.

    ``collapsible``: the rows fold into the summary line (the Training page folds them while a run
    goes, so the plots keep their room) and, unfolded, scroll within a bounded height.
    """

    report_ready = Signal(object)  # PreflightReport
    ROWS_MAX_HEIGHT = 260

    def __init__(self, state: AppState, checker: Checker | None = None, *, title: str = "Pre-flight checklist",
                 collapsible: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.checker = checker or default_checker
        self.report: PreflightReport | None = None
        self.report_config: dict[str, Any] | None = None
        self.job: Task | None = None
        self._then: list[Callable[[PreflightReport], None]] = []
        self._job_config: cfg.RunConfig | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        head = QHBoxLayout()
        heading = QLabel(title)
        heading.setFont(style.scaled_font(self.font(), 1.1, bold=True))
        head.addWidget(heading)
        self.summary = QLabel("Not checked yet.")
        self.summary.setProperty("role", "muted")
        # wraps: "Checking… (PyTorch, the GPU, the dataset)" on one line made the wizard's narrow column
        # wider than its scroll area, clipping the recommendation card beside it
        self.summary.setWordWrap(True)
        head.addWidget(self.summary, 1)
        self.toggle_button = QToolButton()
        self.toggle_button.setAutoRaise(True)
        self.toggle_button.setToolTip("Show or hide the checks")
        self.toggle_button.clicked.connect(lambda: self.set_collapsed(not self.collapsed))
        self.toggle_button.setVisible(False)
        head.addWidget(self.toggle_button)
        self.check_button = QPushButton("Check now")
        self.check_button.clicked.connect(lambda: self.check())
        head.addWidget(self.check_button)
        outer.addLayout(head)
        self.collapsible = collapsible
        self.collapsed = False
        rows_widget = QWidget()
        self.rows_box = QVBoxLayout(rows_widget)
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(3)
        if collapsible:
            self.rows_area: QWidget = QScrollArea()
            self.rows_area.setWidgetResizable(True)
            self.rows_area.setFrameShape(QFrame.Shape.NoFrame)
            self.rows_area.setWidget(rows_widget)
            self.rows_area.setMaximumHeight(self.ROWS_MAX_HEIGHT)
            self.rows_area.setMinimumHeight(90)  # about three rows before it scrolls
            self.rows_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            self.rows_area = rows_widget
        outer.addWidget(self.rows_area)
        self.rows: list[CheckRow] = []
        self.rows_area.setVisible(False)  # nothing checked yet: no empty box
        state.config_changed.connect(self._config_changed)
        state.preflight_changed.connect(self._shared_report)
        shared = state.preflight_for(state.config)
        if shared is not None:  # checked elsewhere already (e.g. on the Training page)
            self.set_report(shared, state.config)

    # ---- reading -------------------------------------------------------------------------------
    def report_for(self, config: cfg.RunConfig) -> PreflightReport | None:
        """The last report (this checklist's or any other's) if made for exactly this configuration."""
        if self.report is None or self.report_config != config.to_dict():
            return self.state.preflight_for(config)
        return self.report

    def set_collapsed(self, collapsed: bool) -> None:
        """Fold the rows into the summary line (only a collapsible checklist folds)."""
        self.collapsed = bool(collapsed) and self.collapsible
        self.rows_area.setVisible(not self.collapsed and bool(self.rows))
        self._show_toggle()

    def _show_toggle(self) -> None:
        self.toggle_button.setVisible(self.collapsible and bool(self.rows))
        self.toggle_button.setText("Show ▸" if self.collapsed else "Hide ▾")

    def is_checking(self) -> bool:
        return self.job is not None and self.job.is_running()

    # ---- intents -------------------------------------------------------------------------------
    def check(self, config: cfg.RunConfig | None = None,
              then: Callable[[PreflightReport], None] | None = None) -> None:
        """Gather and check in the background; ``then(report)`` runs on the GUI thread when done."""
        config = (config or self.state.config).copy()
        if then is not None:
            self._then.append(then)
        if self.is_checking() and self._job_config is not None and self._job_config.to_dict() == config.to_dict():
            return  # the same check is already under way; ``then`` will run with its result
        if self.job is not None:
            self.job.cancel()
        self._job_config = config
        self.summary.setText("Checking… (PyTorch, the GPU, the dataset)")
        self.check_button.setEnabled(False)
        job = Task(lambda progress, stop: self.checker(config), "preflight", self)
        job.succeeded.connect(lambda report, c=config, j=job: self._done(j, c, report))
        job.failed.connect(lambda message, detail, j=job: self._failed(j, message))
        job.ended.connect(lambda j=job: self._ended(j))
        self.job = job
        job.start()

    def set_report(self, report: PreflightReport, config: cfg.RunConfig) -> None:
        self.report, self.report_config = report, config.to_dict()
        if self.state.preflight_report is not report:
            self.state.set_preflight(report, config)
        for row in self.rows:
            self.rows_box.removeWidget(row)
            row.deleteLater()
        self.rows = [CheckRow(item) for item in report.items]
        from medseg_gui.gui.pretrained_fix import attach_pretrained_actions  # choose/download weights in place

        attach_pretrained_actions(self.rows, self.state, recheck=lambda: self.check())
        for row in self.rows:
            self.rows_box.addWidget(row)
        self.summary.setText(summary_text(report))
        self.set_collapsed(self.collapsed and report.ok)  # a red item must be seen
        self._show_toggle()
        self.report_ready.emit(report)

    def _shared_report(self, report: PreflightReport) -> None:
        """Another checklist finished a check: show it here too when it is for our configuration."""
        if report is not self.report and self.state.preflight_for(self.state.config) is report:
            self.set_report(report, self.state.config)

    # ---- internals -----------------------------------------------------------------------------
    def _done(self, job: Task, config: cfg.RunConfig, report: PreflightReport) -> None:
        if job is not self.job:
            return  # a newer check replaced this one
        self.set_report(report, config)
        callbacks, self._then = self._then, []
        for callback in callbacks:
            callback(report)

    def _failed(self, job: Task, message: str) -> None:
        if job is self.job:
            self._then = []
            self.summary.setText(f"The check itself failed: {message}")

    def _ended(self, job: Task) -> None:
        if job is self.job:
            self.check_button.setEnabled(True)

    def _config_changed(self, config: cfg.RunConfig) -> None:
        shared = self.state.preflight_for(config)
        if shared is not None and shared is not self.report:
            self.set_report(shared, config)
        elif self.report is not None and self.report_config != config.to_dict():
            self.summary.setText("The configuration changed since the last check.")


def install_start_gate(tab: Any, checklist: PreflightChecklist) -> None:
    """Check before Start: a red item keeps the run from starting until fixed (or "Start anyway").

    Uses the Training tab's ``start_gate`` hook: with no report for this exact configuration the check
    runs in the background and Start continues by itself when nothing is red.
    """
    state: dict[str, Any] = {"bypass": False, "pending": None}

    def gate(config: cfg.RunConfig, resume_from: str | None) -> bool:
        if state["bypass"]:
            state["bypass"] = False
            return True
        report = checklist.report_for(config)
        if report is None:
            checklist.check(config, then=lambda r: r.ok and tab.start(resume_from=resume_from, config=config))
            return False
        if not report.ok:
            checklist.show()
            checklist.anyway_button.setVisible(True)
            state["pending"] = (config, resume_from)
        return report.ok

    def start_anyway() -> None:
        pending, state["pending"] = state["pending"], None
        checklist.anyway_button.setVisible(False)
        if pending:
            state["bypass"] = True
            config, resume_from = pending
            tab.start(resume_from=resume_from, config=config)

    checklist.anyway_button = QPushButton("Start anyway")
    checklist.anyway_button.setVisible(False)
    checklist.anyway_button.clicked.connect(start_anyway)
    checklist.layout().itemAt(0).layout().addWidget(checklist.anyway_button)
    checklist.report_ready.connect(lambda r: checklist.anyway_button.setVisible(False) if r.ok else None)
    tab.start_gate = gate
