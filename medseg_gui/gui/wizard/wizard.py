"""The recommend-and-train wizard: dataset → check → hardware and configuration → training → result.

It works on its own ``AppState`` (a copy of the main window's configuration, fed the window's live
hardware readings), so Cancel leaves the app as it was; Finish hands the configuration, the new run
and its model over to the main window and shows the prediction in the Viewer page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMessageBox, QWidget, QWizard

from medseg_gui.core.config import RunConfig
from medseg_gui.core.hardware import HardwareSnapshot
from medseg_gui.gui.resources import app_icon
from medseg_gui.gui.screen_fit import fit_to_screen
from medseg_gui.gui.state import AppState
from medseg_gui.gui.wizard.config_page import ConfigPage
from medseg_gui.gui.wizard.dataset_page import DatasetPage
from medseg_gui.gui.wizard.result_page import ResultPage, show_prediction
from medseg_gui.gui.wizard.training_page import TrainingPage
from medseg_gui.gui.wizard.validation_page import ValidationPage

PAGE_DATASET, PAGE_VALIDATION, PAGE_CONFIG, PAGE_TRAINING, PAGE_RESULT = range(5)
STOP_BUTTON = QWizard.WizardButton.CustomButton1
LAYOUT_IDLE = [QWizard.WizardButton.Stretch, QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
               QWizard.WizardButton.FinishButton, QWizard.WizardButton.CancelButton]
LAYOUT_TRAINING = [QWizard.WizardButton.Stretch, STOP_BUTTON, QWizard.WizardButton.NextButton,
                   QWizard.WizardButton.CancelButton]


class TrainingWizard(QWizard):
    handed_over = Signal(str)  # the model bundle shown in the main window's Viewer on Finish

    def __init__(self, window: Any = None, *, config: RunConfig | None = None,
                 probe_fn: Callable[[], HardwareSnapshot] | None = None, runner_factory=None,
                 confirm: Callable[[str, str], bool] | None = None, parent: QWidget | None = None):
        super().__init__(parent if parent is not None else window)
        self.main_window = window
        base = config if config is not None else (window.state.config if window is not None else RunConfig())
        self.state = AppState(base, parent=self)
        self.confirm = confirm or self._confirm_dialog
        self._close_when_stopped = False
        self.setWindowTitle("New training — medseg-gui")
        self.setWindowIcon(app_icon())
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, False)
        self.setOption(QWizard.WizardOption.HaveCustomButton1, True)
        self.setButtonText(STOP_BUTTON, "Stop training")
        self.setButtonLayout(LAYOUT_IDLE)  # Stop appears only while a run goes
        self.setButtonText(QWizard.WizardButton.FinishButton, "Open in the Viewer")
        self.resize(1380, 860)
        fit_to_screen(self)  # a 1366 x 768 laptop gets a wizard that fits, not one cut off at the bottom

        self.dataset_page = DatasetPage()
        self.validation_page = ValidationPage(self.state, self.dataset_page.dataset_path)
        self.config_page = ConfigPage(self.state, self._report)
        self.training_page = TrainingPage(self.state, self.config_page.use_plan, runner_factory)
        self.result_page = ResultPage(self.training_page, self.state)
        for page_id, page in ((PAGE_DATASET, self.dataset_page), (PAGE_VALIDATION, self.validation_page),
                              (PAGE_CONFIG, self.config_page), (PAGE_TRAINING, self.training_page),
                              (PAGE_RESULT, self.result_page)):
            self.setPage(page_id, page)
            page.setTitle(f"Step {page_id + 1} of {PAGE_RESULT + 1} · {page.title()}")
        self.setStartId(PAGE_DATASET)
        self.customButtonClicked.connect(self._custom_button)
        self.training_page.running_changed.connect(self._training_running)

        if window is not None:  # live readings from the window's poller; our checks answer its checklists
            self.state.share_preflight_with(window.state)
            window.state.snapshot_changed.connect(self.state.set_snapshot)
            if window.state.snapshot is not None:
                self.state.set_snapshot(window.state.snapshot)
        if self.state.snapshot is None:
            if probe_fn is None:
                from medseg_gui.gui.workers import default_probe

                probe_fn = default_probe
            self.state.set_snapshot(probe_fn())

    def _report(self) -> Any:
        check = self.validation_page.check
        return None if check is None else check.report

    # ----- buttons -------------------------------------------------------------------------------
    def _training_running(self, running: bool) -> None:
        self.setButtonLayout(LAYOUT_TRAINING if running else LAYOUT_IDLE)
        self.button(STOP_BUTTON).setEnabled(running)
        if not running and self._close_when_stopped:
            self._close_when_stopped = False
            super().reject()

    def _custom_button(self, which: int) -> None:
        if which == STOP_BUTTON.value:
            self.button(STOP_BUTTON).setEnabled(False)
            self.training_page.stop()

    def reject(self) -> None:
        """Cancel (and Esc, and the close box): during training, stop the run cleanly first."""
        if self.training_page.is_running():
            if self._close_when_stopped:
                return
            if not self.confirm("Stop training?", "A training run is going. Stop it (a checkpoint is saved) "
                                                  "and close the wizard?"):
                return
            self._close_when_stopped = True
            self.button(QWizard.WizardButton.CancelButton).setEnabled(False)
            self.training_page.stop()
            return
        super().reject()

    def accept(self) -> None:
        """Finish: hand the configuration, the run and the model over to the main window's pages."""
        window, bundle = self.main_window, self.training_page.bundle
        if window is not None and bundle is not None:
            window.state.set_config(self.state.config, source="wizard")
            training_tab = getattr(window, "training_tab", None)
            if training_tab is not None:
                training_tab.refresh_history()
            viewer = getattr(window, "viewer", None)
            if viewer is not None:
                window.show_page("Viewer")
                show_prediction(viewer, bundle, self.result_page.example)
                self.handed_over.emit(bundle)
        super().accept()

    def _confirm_dialog(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(self, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

