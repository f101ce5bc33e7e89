"""Wizard step 3: hardware, the recommended configuration (editable) and the pre-flight checklist.

It reuses the Hardware page's recommendation card and the Configuration page's form on the wizard's
own ``AppState``, so the same explanations and per-field checks appear here; Next is enabled when
the configuration is valid and the checklist (``core.preflight``) has no red item.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter, QVBoxLayout,
                               QWidget, QWizardPage)

from medseg_gui.core import config as cfg
from medseg_gui.gui import style
from medseg_gui.gui.config_editor import ConfigEditor
from medseg_gui.gui.hardware_panel import RecommendationCard
from medseg_gui.gui.state import AppState
from medseg_gui.gui.wizard.tasks import start_task

MARKS = {"ok": ("✓", style.OK_TEXT), "warn": ("!", style.WARN_TEXT), "fail": ("✗", style.ERROR)}


def plan_available() -> bool:
    try:
        import medseg_gui.core.plan  # noqa: F401
    except ImportError:
        return False
    return True


def run_preflight(config: cfg.RunConfig, snapshot: Any, report: Any) -> Any:
    """The checklist for ``config`` (worker thread: it imports torch and may read the dataset)."""
    from medseg_gui.core.preflight import preflight

    return preflight(config, snapshot=snapshot, report=report)


def checklist_html(report: Any) -> str:
    rows = []
    for item in report.items:
        mark, colour = MARKS.get(item.status, ("?", style.MUTED))
        fix = (f"<br><span style='color:{style.MUTED}'>Fix: {html.escape(item.fix)}</span>"
               if item.fix and item.status != "ok" else "")
        rows.append(f"<tr><td style='color:{colour};font-weight:600;padding-right:8px' valign='top'>{mark}</td>"
                    f"<td><b>{html.escape(item.title)}</b>: {html.escape(item.detail)}{fix}</td></tr>")
    verdict = "Ready to train." if report.ok else "Not ready: fix the items marked ✗."
    return f"<table cellspacing='3'>{''.join(rows)}</table><p><b>{verdict}</b></p>"


class ConfigPage(QWizardPage):
    def __init__(self, state: AppState, dataset_report, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._dataset_report = dataset_report  # callable: the validation report of step 2 (or None)
        self._adopted_for: str | None = None  # dataset path whose recommendation was adopted
        self.preflight_report: Any = None
        self.preflight_error: str | None = None
        self._preflight_for: str | None = None  # the config (as TOML) the shown checklist is for
        self._ticket = 0
        self.setTitle("Hardware and configuration")
        self.setSubTitle("The app read this machine's free GPU memory and recommends a configuration that fits. "
                         "Change anything you like: fields that differ from the recommendation are marked.")

        layout = QVBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lcol = QVBoxLayout(left)
        lcol.setContentsMargins(0, 0, 0, 0)
        self.card = RecommendationCard(state)
        lcol.addWidget(self.card)
        self.checklist_title = QLabel("Pre-flight checklist")
        self.checklist_title.setProperty("role", "cardTitle")
        lcol.addWidget(self.checklist_title)
        self.checklist = QLabel("Checking…")
        self.checklist.setWordWrap(True)
        self.checklist.setTextFormat(Qt.TextFormat.RichText)
        self.checklist.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.recheck = QPushButton("Check again")
        self.recheck.clicked.connect(self.start_preflight)
        lcol.addWidget(self.checklist)
        lcol.addWidget(self.recheck, 0, Qt.AlignmentFlag.AlignLeft)
        lcol.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(420)
        scroll.setWidget(left)
        split.addWidget(scroll)
        self.editor = ConfigEditor(state)
        split.addWidget(self.editor)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([420, 880])
        layout.addWidget(split, 1)

        row = QHBoxLayout()
        self.plan_check = QCheckBox("Quick check first: SegFormer-b0 at 224 px for a few steps, then the full run "
                                    "(catches a broken dataset, driver or NaN loss in a minute)")
        self.plan_check.setVisible(plan_available())
        row.addWidget(self.plan_check)
        layout.addLayout(row)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(700)
        self._debounce.timeout.connect(self.start_preflight)
        state.config_changed.connect(self._config_changed)
        state.recommendation_changed.connect(self._recommendation_changed)
        self.editor.validity_changed.connect(lambda _v: self.completeChanged.emit())

    def _is_current(self) -> bool:
        wizard = self.wizard()
        return wizard is not None and wizard.currentPage() is self

    def use_plan(self) -> bool:
        return self.plan_check.isVisible() and self.plan_check.isChecked()

    def initializePage(self) -> None:  # noqa: N802 (Qt naming)
        self._adopt_recommendation()
        self.start_preflight()

    def _adopt_recommendation(self) -> None:
        """Start from the recommendation once per dataset; later visits keep the user's edits."""
        path = self.state.dataset_path
        if self._adopted_for != path and self.state.recommendation is not None:
            self._adopted_for = path
            self.state.use_recommendation()

    def _recommendation_changed(self, _rec) -> None:
        if self._is_current() and self._adopted_for != self.state.dataset_path:
            self._adopt_recommendation()

    def _config_changed(self, _config) -> None:
        if self._is_current():
            self.completeChanged.emit()
            self._debounce.start()

    def start_preflight(self) -> None:
        self._debounce.stop()
        config = self.state.config.copy()
        self._preflight_for = cfg.to_toml(config)
        self.preflight_report, self.preflight_error = None, None
        self.checklist.setText("Checking (the first check loads PyTorch, a few seconds)…")
        snapshot, report = self.state.snapshot, self._dataset_report()
        self._ticket, _task = start_task(self, lambda _p, _s: run_preflight(config, snapshot, report),
                                         self._preflight_done, self._preflight_failed, name="wizard-preflight")
        self.completeChanged.emit()

    def _preflight_done(self, ticket: int, report: Any) -> None:
        if ticket != self._ticket:
            return
        self.preflight_report = report
        self.checklist.setText(checklist_html(report))
        self.completeChanged.emit()

    def _preflight_failed(self, ticket: int, message: str) -> None:
        if ticket != self._ticket:
            return
        self.preflight_error = message
        self.checklist.setText(f"<span style='color:{style.ERROR}'>The checklist could not run: "
                               f"{html.escape(message)}</span>")
        self.completeChanged.emit()

    def preflight_current(self) -> bool:
        return self._preflight_for == cfg.to_toml(self.state.config)

    def isComplete(self) -> bool:  # noqa: N802
        if self.state.problems():
            return False
        if self.preflight_error is not None:
            return True  # a checklist that cannot run must not lock the user out; training reports real errors
        return self.preflight_report is not None and self.preflight_current() and self.preflight_report.ok
