"""The tools in the GUI: LR finder dialog, speed card (benchmark), pre-flight checklist, plan.

The main window builds the "Tools" page, a speed card under the recommendation on the Hardware
page and the pre-flight checklist on the Training tab (checked before Start, ``install_start_gate``).
Diagnosis lines need no GUI code: they arrive as LogMessage events in the Training tab's log.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from medseg_gui.gui import style
from medseg_gui.gui.plots import sci
from medseg_gui.gui.state import AppState
from medseg_gui.gui.tools.checklist import PreflightChecklist, install_start_gate
from medseg_gui.gui.tools.lr_dialog import LrFinderDialog
from medseg_gui.gui.tools.speed_card import SpeedCard

__all__ = ["ToolsPage", "PreflightChecklist", "LrFinderDialog", "SpeedCard", "install_start_gate"]


class ToolsPage(QWidget):
    """Learning-rate finder, speed, pre-flight checklist and the progressive plan, for the current config."""

    def __init__(self, state: AppState, *, checker: Any = None, finder: Any = None, benchmarker: Any = None,
                 known: Any = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page")
        self.state = state
        self.finder = finder
        self.dialog: LrFinderDialog | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 16)
        heading = QLabel("Tools")
        heading.setProperty("role", "pageTitle")
        heading.setFont(style.scaled_font(self.font(), 1.6, bold=True))
        outer.addWidget(heading)
        sub = QLabel("For the configuration on the Configuration page. Nothing here changes it unless you say so.")
        sub.setProperty("role", "muted")
        outer.addWidget(sub)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        box = QVBoxLayout(body)
        box.setSpacing(14)

        lr_card, lr = self._card("Learning rate")
        self.lr_label = QLabel()
        lr.addWidget(self.lr_label)
        row = QHBoxLayout()
        self.lr_button = QPushButton("Find a learning rate…")
        self.lr_button.clicked.connect(self.open_lr_finder)
        row.addWidget(self.lr_button)
        row.addStretch(1)
        lr.addLayout(row)
        box.addWidget(lr_card)

        self.speed = SpeedCard(state, benchmarker, known)
        box.addWidget(self.speed)

        check_card, cl = self._card()
        self.checklist = PreflightChecklist(state, checker)
        cl.addWidget(self.checklist)
        box.addWidget(check_card)

        plan_card, pl = self._card("Progressive plan")
        self.plan_label = QLabel()
        self.plan_label.setWordWrap(True)
        pl.addWidget(self.plan_label)
        box.addWidget(plan_card)
        box.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        state.config_changed.connect(lambda _c: self._show_config())
        self._show_config()

    def _show_config(self) -> None:
        from medseg_gui.core.tools.progressive_plan import describe, progressive_plan

        config = self.state.config
        self.lr_label.setText(f"Current learning rate: {sci(config.training.lr)}")
        lines = describe(progressive_plan(config))
        self.plan_label.setText("Check the set-up with a small model first (about a minute), then train for "
                                "real. With this configuration:\n" + "\n".join(lines)
                                + "\nRun it from the New training wizard (File menu) or with the medseg command; "
                                  "the check's run folder is kept.")

    def _card(self, title: str | None = None) -> tuple[QFrame, QVBoxLayout]:
        """A styled card frame and its layout, with a bold title when given."""
        card = QFrame()
        card.setProperty("card", True)
        layout = QVBoxLayout(card)
        layout.setContentsMargins(18, 14, 18, 14)
        if title:
            heading = QLabel(title)
            heading.setFont(style.scaled_font(self.font(), 1.15, bold=True))
            layout.addWidget(heading)
        return card, layout

    def open_lr_finder(self) -> LrFinderDialog:
        if self.dialog is None:
            self.dialog = LrFinderDialog(self.state, self.finder, self)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def set_training(self, training: bool) -> None:
        """Trial runs beside a training run would compete for the GPU and measure nothing useful."""
        self.lr_button.setEnabled(not training)
        self.lr_button.setToolTip("Not while a training run is going: the search would compete with it for "
                                  "the GPU and measure neither" if training else
                                  "Train a few dozen batches with a growing learning rate and suggest one")
        self.speed.set_enabled_for_training(training)
