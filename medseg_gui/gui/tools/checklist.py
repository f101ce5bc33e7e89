"""The pre-flight checklist widget: green/amber/red rows with the fix, and the gate before Start.

The checks themselves are ``core.preflight`` (pure functions of gathered facts); gathering imports
torch, reads NVML and checks the dataset, which takes seconds, so it runs in a ``ToolJob``. The last
report is kept with the configuration it was made for: ``report_for(config)`` answers only for that
exact configuration, so an edit never hides behind an old green list.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from medseg_gui.core import config as cfg
from medseg_gui.core.preflight import CheckItem, PreflightReport
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState
from medseg_gui.gui.tools.job import ToolJob

Checker = Callable[[cfg.RunConfig], PreflightReport]

COLOURS = {"ok": (style.OK_TEXT, style.OK_BG, "✓"), "warn": (style.WARN_TEXT, style.WARN_BG, "!"),
           "fail": (style.ERROR, style.ERROR_BG, "✗")}


def default_checker(config: cfg.RunConfig) -> PreflightReport:
    from medseg_gui.core.preflight import preflight

    return preflight(config)


class CheckRow(QFrame):
    """One item: a coloured mark, the title and what was found, and the fix when it is not green."""

    def __init__(self, item: CheckItem, parent: QWidget | None = None):
        super().__init__(parent)
        self.item = item
        fg, bg, mark = COLOURS.get(item.status, COLOURS["warn"])
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


class PreflightChecklist(QWidget):
    """The checklist for the state's configuration. ``check()`` gathers in the background."""

    report_ready = Signal(object)  # PreflightReport

    def __init__(self, state: AppState, checker: Checker | None = None, *, title: str = "Pre-flight checklist",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.checker = checker or default_checker
        self.report: PreflightReport | None = None
        self.report_config: dict[str, Any] | None = None
        self.job: ToolJob | None = None
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
        head.addWidget(self.summary, 1)
        self.check_button = QPushButton("Check now")
        self.check_button.clicked.connect(lambda: self.check())
        head.addWidget(self.check_button)
        outer.addLayout(head)
        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(3)
        outer.addLayout(self.rows_box)
        self.rows: list[CheckRow] = []
        state.config_changed.connect(self._config_changed)

    # ---- reading -------------------------------------------------------------------------------
    def report_for(self, config: cfg.RunConfig) -> PreflightReport | None:
        """The last report if it was made for exactly this configuration, else None."""
        if self.report is None or self.report_config != config.to_dict():
            return None
        return self.report

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
        job = ToolJob(lambda progress, stop: self.checker(config), self)
        job.succeeded.connect(lambda report, c=config, j=job: self._done(j, c, report))
        job.errored.connect(lambda message, detail, j=job: self._failed(j, message))
        job.ended.connect(lambda j=job: self._ended(j))
        self.job = job
        job.start()

    def set_report(self, report: PreflightReport, config: cfg.RunConfig) -> None:
        self.report, self.report_config = report, config.to_dict()
        for row in self.rows:
            self.rows_box.removeWidget(row)
            row.deleteLater()
        self.rows = [CheckRow(item) for item in report.items]
        for row in self.rows:
            self.rows_box.addWidget(row)
        counts = {s: sum(1 for i in report.items if i.status == s) for s in ("fail", "warn")}
        if counts["fail"]:
            self.summary.setText(f"{counts['fail']} problem(s) to fix before training"
                                 + (f", {counts['warn']} warning(s)" if counts["warn"] else ""))
        elif counts["warn"]:
            self.summary.setText(f"Ready, with {counts['warn']} warning(s)")
        else:
            self.summary.setText("All clear")
        self.report_ready.emit(report)

    # ---- internals -----------------------------------------------------------------------------
    def _done(self, job: ToolJob, config: cfg.RunConfig, report: PreflightReport) -> None:
        if job is not self.job:
            return  # a newer check replaced this one
        self.set_report(report, config)
        callbacks, self._then = self._then, []
        for callback in callbacks:
            callback(report)

    def _failed(self, job: ToolJob, message: str) -> None:
        if job is self.job:
            self._then = []
            self.summary.setText(f"The check itself failed: {message}")

    def _ended(self, job: ToolJob) -> None:
        if job is self.job:
            self.check_button.setEnabled(True)

    def _config_changed(self, config: cfg.RunConfig) -> None:
        if self.report is not None and self.report_config != config.to_dict():
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
