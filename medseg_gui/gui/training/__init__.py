"""The Training tab: live training in the GUI (worker thread or child process, live plots, run history).

The main window builds the tab, its close guard and its status-bar item (``run_status_item``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QPushButton

from medseg_gui.gui.training.tab import CloseGuard, TrainingTab

__all__ = ["TrainingTab", "CloseGuard", "run_status_item"]


def run_status_item(tab: Any, show_training: Callable[[], None]) -> QPushButton:
    """A status-bar item with the live run's epoch, progress and ETA, seen from every page; a click
    shows the Training page. Hidden when no run is going."""
    button = QPushButton("")
    button.setFlat(True)
    button.setToolTip("A training run is going: click to see its plots")
    button.setVisible(False)
    button.clicked.connect(lambda: show_training())

    def show(text: str) -> None:
        button.setText(text)
        button.setVisible(bool(text))

    tab.run_status.connect(show)
    return button
