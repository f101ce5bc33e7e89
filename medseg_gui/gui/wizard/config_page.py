"""Wizard step 3: hardware, the recommended configuration (editable) and the pre-flight checklist.

It reuses the Hardware page's recommendation card, the Configuration page's form and the Tools page's
pre-flight checklist on the wizard's own ``AppState``, so the same explanations and per-field checks
appear here; Next is enabled when the configuration is valid and the checklist has no red item.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QScrollArea, QSplitter, QVBoxLayout,
                               QWidget, QWizardPage)

from medseg_gui.core import config as cfg
from medseg_gui.gui.config_editor import ConfigEditor
from medseg_gui.gui.hardware_panel import RecommendationCard
from medseg_gui.gui.state import AppState
from medseg_gui.gui.tools.checklist import PreflightChecklist


def plan_available() -> bool:
    try:
        import medseg_gui.core.tools.progressive_plan  # noqa: F401
    except ImportError:
        return False
    return True


def run_preflight(config: cfg.RunConfig, snapshot: Any, report: Any) -> Any:
    """The checklist for ``config`` (worker thread: it imports torch and may read the dataset)."""
    from medseg_gui.core.tools.preflight import preflight

    return preflight(config, snapshot=snapshot, report=report)


class ConfigPage(QWizardPage):
    def __init__(self, state: AppState, dataset_report, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._dataset_report = dataset_report  # callable: the validation report of step 2 (or None)
        self._adopted_for: str | None = None  # dataset path whose recommendation was adopted
        self.preflight_error: str | None = None
        self._facts: tuple[Any, Any] = (None, None)
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
        self.checklist = PreflightChecklist(state, checker=self._check)
        lcol.addWidget(self.checklist)
        lcol.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(left)
        self._left, self._left_scroll = left, scroll
        need = self._fit_left_column()
        split.addWidget(scroll)
        self.editor = ConfigEditor(state, compact=True)  # the page's title is its heading
        split.addWidget(self.editor)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([need, 1300 - need])
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
        self.checklist.report_ready.connect(lambda _r: self.completeChanged.emit())
        self.checklist.report_ready.connect(lambda _r: self._fit_left_column())

    def _fit_left_column(self) -> int:
        """As wide as the card and the checklist need (a row's buttons, the card's three columns),
        plus the scroll bar: a fixed 450 px clipped "Image size", "Data workers", the card's button and
        the weights row's buttons at 1366 px. Called again when the checklist shows new rows."""
        bar = self._left_scroll.verticalScrollBar().sizeHint().width()
        need = max(450, self._left.minimumSizeHint().width() + bar + 6)
        self._left_scroll.setMinimumWidth(need)
        return need

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

    def _check(self, config: cfg.RunConfig) -> Any:
        snapshot, report = self._facts  # taken on the GUI thread when the check started
        return run_preflight(config, snapshot, report)

    def start_preflight(self) -> None:
        """Run the Tools page's checklist on the wizard's configuration (in the background)."""
        self._debounce.stop()
        self.preflight_error = None
        self._facts = (self.state.snapshot, self._dataset_report())
        self.checklist.check()
        job = self.checklist.job
        if job is not None:
            job.failed.connect(self._preflight_failed)
            job.ended.connect(self.completeChanged)
        self.completeChanged.emit()

    def _preflight_failed(self, message: str, _detail: str = "") -> None:
        self.preflight_error = message

    @property
    def preflight_report(self) -> Any:
        """The checklist's report if it is for the configuration shown now, else None."""
        return self.checklist.report_for(self.state.config)

    def preflight_current(self) -> bool:
        return self.preflight_report is not None

    def validatePage(self) -> bool:  # noqa: N802
        """Next starts a training run, so it needs a valid configuration and a finished checklist.

        The disabled Next button alone did not guarantee it: QWizard.next() (Enter, or code) skips the
        button's state, and after Back and Next the checklist of the new visit may still be running.
        """
        return self.isComplete()

    def isComplete(self) -> bool:  # noqa: N802
        if self.state.problems():
            return False
        report = self.preflight_report
        if report is not None:
            return report.ok
        # a checklist that cannot run must not lock the user out; training reports real errors itself
        return self.preflight_error is not None and not self.checklist.is_checking()
