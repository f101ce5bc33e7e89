"""The Training tab: live training in the GUI (worker thread or child process, live plots, run history).

``install_training_tab(window)`` puts the tab in the main window's "Training" page, lets File > Open
run re-plot a past run, routes "Open best model in viewer" to the Viewer page, and guards closing the
window while a run is going.
"""

from __future__ import annotations

from typing import Any

from medseg_gui.gui.training.tab import CloseGuard, TrainingTab

__all__ = ["TrainingTab", "CloseGuard", "install_training_tab", "install_run_status"]

# "Open best model in viewer" loads the model and runs it on the open image (load_model_and_run)
VIEWER_OPENERS = ("load_model_and_run", "load_model", "open_bundle", "load_bundle")


def install_training_tab(window: Any, **tab_kwargs: Any) -> TrainingTab:
    tab = TrainingTab(window.state, **tab_kwargs)
    window.replace_page("Training", tab)

    def open_run(path: str) -> None:
        window.show_page("Training")
        tab.open_run(path)

    def open_in_viewer(bundle: str) -> None:
        viewer = window.page("Viewer")
        opener = next((getattr(viewer, n) for n in VIEWER_OPENERS if callable(getattr(viewer, n, None))), None)
        if opener is None:
            window.statusBar().showMessage(f"The viewer is not available in this build; the model is in {bundle}",
                                           8000)
            return
        window.show_page("Viewer")
        opener(bundle)

    window.run_opener = open_run
    tab.open_in_viewer.connect(open_in_viewer)
    install_run_status(window, tab)
    window.training_close_guard = CloseGuard(tab, window)
    window.installEventFilter(window.training_close_guard)
    return tab


def install_run_status(window: Any, tab: TrainingTab) -> Any:
    """A status-bar item with the live run's epoch, progress and ETA, seen from every page; a click
    shows the Training page. Hidden when no run is going."""
    from PySide6.QtWidgets import QPushButton

    button = QPushButton("")
    button.setFlat(True)
    button.setToolTip("A training run is going: click to see its plots")
    button.setVisible(False)
    button.clicked.connect(lambda: window.show_page("Training"))

    def show(text: str) -> None:
        button.setText(text)
        button.setVisible(bool(text))

    tab.run_status.connect(show)
    window.statusBar().addPermanentWidget(button)
    window.run_status_item = button
    return button
