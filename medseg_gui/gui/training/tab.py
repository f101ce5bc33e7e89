"""The Training tab: Start / Stop / Resume controls, run history, and the live view of a run.

The tab only wires things together: the run itself is a ``TrainingRunner`` (worker thread), the state
of the plots is a core ``LiveMetrics`` fed by the runner's event pump (one batch at most 10 times a
second however fast events arrive), and the drawing is ``LiveView``. Dialogs go through injectable callables so tests never block on a modal.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMessageBox,
                               QPushButton, QSplitter, QVBoxLayout, QWidget)

from medseg_gui.core import config as cfg
from medseg_gui.core import runs
from medseg_gui.core.events import RunFailed, RunFinished, RunStarted, failure_title, read_jsonl
from medseg_gui.core.live_metrics import LiveMetrics, replay_run
from medseg_gui.core.words import format_duration
from medseg_gui.core.run_lock import lock_holder
from medseg_gui.core.run_state import resume_words, summary_line
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState
from medseg_gui.gui.training.live_view import LiveView
from medseg_gui.core.engine.failures import hint_for
from medseg_gui.gui.training.worker import TrainingRunner

ROLE_STATE = Qt.ItemDataRole.UserRole + 1  # (status, epochs done, can resume) of a listed run
ErrorPresenter = Callable[[str, str, str, str], None]  # (title, reason, hint, detail)
Confirm = Callable[[str, str], bool]  # (title, question) -> yes?
ChooseDir = Callable[[str, str], str]  # (caption, start folder) -> folder or ""


class TrainingTab(QWidget):
    open_in_viewer = Signal(str)  # a model bundle folder; the main window routes it to the viewer
    training_changed = Signal(bool)  # a run started (True) or ended (False)
    run_status = Signal(str)  # one line for the status bar while a run goes ("" when none)

    def __init__(self, state: AppState, runner: TrainingRunner | None = None, *,
                 error_presenter: ErrorPresenter | None = None, confirm: Confirm | None = None,
                 choose_dir: ChooseDir | None = None,
                 close_timeout_ms: int = 120_000, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("page")
        self.state = state
        self.runner = runner or TrainingRunner(self)
        self.present_error = error_presenter or self._error_dialog
        self.confirm = confirm or self._confirm_dialog
        self.choose_dir = choose_dir or (lambda caption, start: QFileDialog.getExistingDirectory(self, caption, start))
        self.open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl
        self.close_timeout_ms = close_timeout_ms
        self.live = LiveMetrics()
        self.shown = self.live  # the model on screen: the live run or a re-opened past run
        self.last_result: RunFinished | RunFailed | None = None
        self._close_window_after_stop: QWidget | None = None
        # (config, resume_from) -> may start now? Set by gui/tools (pre-flight checklist); None: no gate
        self.start_gate: Callable[[cfg.RunConfig, str | None], bool] | None = None
        self.preflight: QWidget | None = None  # the checklist above the plots (add_preflight)
        self._build()
        self.runner.events_arrived.connect(self._apply_events)
        self.runner.ended.connect(self._on_run_ended)
        self._history_root: Path | None = None
        self._force_closing = False
        # list_runs reads every run's events.jsonl: re-list only when the output folder itself changes,
        # not on every edit in the config form.
        self.state.config_changed.connect(
            lambda _c: self.refresh_history() if self._output_dir() != self._history_root else None)
        self.refresh_history()
        self._update_controls()

    # ---- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 16)
        heading = QLabel("Training")
        heading.setProperty("role", "pageTitle")
        heading.setFont(style.scaled_font(self.font(), 1.6, bold=True))
        outer.addWidget(heading)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setProperty("role", "primary")
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume selected run")
        self.resume_button.clicked.connect(self.resume_selected)
        self.folder_button = QPushButton("Open run folder")
        self.folder_button.clicked.connect(self.open_run_folder)
        self.viewer_button = QPushButton("Open best model in viewer")
        self.viewer_button.clicked.connect(self.open_best_model)
        self.live_button = QPushButton("Show the live run")
        self.live_button.clicked.connect(self.show_live)
        for b in (self.start_button, self.stop_button, self.resume_button, self.folder_button, self.viewer_button,
                  self.live_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        outer.addLayout(buttons)

        self.problems_label = QLabel()
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextFormat(Qt.TextFormat.RichText)
        self.problems_label.setStyleSheet(f"background:{style.ERROR_BG};color:{style.ERROR};padding:8px;"
                                          f"border-radius:4px")
        self.problems_label.setVisible(False)
        outer.addWidget(self.problems_label)

        split = QSplitter(Qt.Orientation.Horizontal)
        history = QWidget()
        hl = QVBoxLayout(history)
        hl.setContentsMargins(0, 0, 8, 0)
        title = QLabel("Past runs")
        title.setFont(style.scaled_font(self.font(), 1.1, bold=True))
        hl.addWidget(title)
        self.history_folder = QLabel()
        self.history_folder.setProperty("role", "muted")
        self.history_folder.setWordWrap(True)
        hl.addWidget(self.history_folder)
        self.history = QListWidget()
        self.history.itemActivated.connect(self._history_activated)
        self.history.itemClicked.connect(self._history_activated)
        self.history.currentItemChanged.connect(lambda *_: self._update_controls())
        hl.addWidget(self.history, 1)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_history)
        hl.addWidget(refresh)
        split.addWidget(history)
        self.view = LiveView()
        split.addWidget(self.view)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([240, 1000])
        outer.addWidget(split, 1)

    # ---- state ---------------------------------------------------------------------------------
    def is_training(self) -> bool:
        return self.runner.is_running()

    def _update_controls(self) -> None:
        training = self.is_training()
        stopping = training and self.runner.stop_requested_at is not None
        self.start_button.setEnabled(not training)
        self.start_button.setToolTip("A run is going: stop it first" if training else
                                     "Start a new run with the configuration on the Configuration page")
        resumable, why = self._resume_state()
        self.resume_button.setEnabled(resumable)
        self.resume_button.setToolTip(why)
        self.stop_button.setEnabled(training and not stopping)
        self.stop_button.setText("Stopping…" if stopping else "Stop")
        self.stop_button.setToolTip("Stop after this batch; a checkpoint is saved" if training else "No run is going")
        run_dir = self.shown.run_dir
        self.folder_button.setEnabled(bool(run_dir) and Path(run_dir).is_dir())
        self.folder_button.setToolTip("Open the run's folder (checkpoints, metrics.csv, the exported model)"
                                      if self.folder_button.isEnabled() else "No run shown yet")
        bundle = self.best_bundle()
        self.viewer_button.setEnabled(bundle is not None)
        self.viewer_button.setToolTip("Load the run's exported model in the Viewer and run it on the open image"
                                      if bundle is not None else
                                      "No model yet: a run exports its best model when it ends")
        self.live_button.setVisible(training and self.shown is not self.live)

    def _selected_run(self) -> QListWidgetItem | None:
        item = self.history.currentItem()
        return item if item is not None and item.isSelected() else None

    def _resume_state(self) -> tuple[bool, str]:
        """Whether the selected run can be resumed, and the tooltip that says why (not)."""
        if self.is_training():
            return False, "A run is going: stop it first"
        item = self._selected_run()
        if item is None:
            return False, "Select a stopped run in the list to resume it"
        status, epochs_done, can = item.data(ROLE_STATE) or ("", 0, False)
        if status == "training":
            return False, "This run is being trained now by another window or command; wait for it to end"
        if not can:
            return False, "This run has no checkpoint to resume from (it stopped before saving one)"
        if status == "finished":
            return False, "This run finished all its epochs"
        return True, f"{resume_words(epochs_done)}, with the configuration the run was started with"

    def best_bundle(self) -> str | None:
        """The shown run's exported bundle (written when the run ends), if it exists."""
        candidates = [self.shown.bundle_dir]
        if self.shown.run_dir:
            candidates.append(str(Path(self.shown.run_dir) / runs.BUNDLE_DIR))
        for c in candidates:
            if c and (Path(c) / runs.BUNDLE_META_FILE).is_file():
                return c
        return None

    def add_preflight(self, checklist: QWidget) -> None:
        """The pre-flight checklist under the Start/Stop buttons; while a run goes it is one line
        ("Ready · 1 warning  Show ▸"): the plots need the room."""
        self.layout().insertWidget(2, checklist)
        self.preflight = checklist
        self.training_changed.connect(checklist.set_collapsed)

    # ---- intents -------------------------------------------------------------------------------
    def start(self, resume_from: str | None = None, config: cfg.RunConfig | None = None) -> bool:
        """Validate, then start a run in the worker thread; False (with the problems shown) if not started.

        The dataset check runs in the worker (it can take seconds, or generate the demo); if it fails
        the run stops before any run folder is made and the report's problems are shown.
        """
        if self.is_training():
            return False
        config = (config or self.state.config).copy()
        problems = cfg.validate(config)
        if problems:
            items = "".join(f"<li>{html.escape(str(p))}</li>" for p in problems)
            self.problems_label.setText(f"<b>The configuration cannot be started yet:</b><ul>{items}</ul>"
                                        f"Fix these on the Configuration page.")
            self.problems_label.setVisible(True)
            return False
        self.problems_label.setVisible(False)
        if self.start_gate is not None and not self.start_gate(config, resume_from):
            return False
        self.history.clearSelection()  # the old run is no longer what the plots show
        self.history.setCurrentItem(None)
        self.live.reset()
        if resume_from and (Path(resume_from) / runs.EVENTS_FILE).is_file():
            # the plots continue the stopped run: its history first, then the resumed events (which
            # drop whatever comes after the checkpoint's step)
            self.live.apply_many(read_jsonl(Path(resume_from) / runs.EVENTS_FILE))
            self.live.status, self.live.finished = "idle", None  # not "stopped" while the resume starts
        self.shown = self.live
        self.view.clear()
        self.last_result = None
        self.runner.start(config, resume_from=resume_from)
        self._update_controls()
        self.training_changed.emit(True)
        return True

    def stop(self) -> None:
        """Cooperative stop: the session ends after this batch and saves a checkpoint; the UI stays live."""
        if not self.is_training():
            return
        self.runner.stop()
        self._update_controls()

    def resume_dialog(self) -> None:
        """A run folder elsewhere (not in the list's output folder): pick it, then resume it."""
        folder = self.choose_dir("Resume which run?", str(self._output_dir()))
        if folder:
            self.resume(folder)

    def resume_selected(self) -> bool:
        item = self._selected_run()
        if item is None:
            return False
        return self.resume(item.data(Qt.ItemDataRole.UserRole))

    def resume(self, run_dir: str) -> bool:
        """Resume a past run with the configuration it was started with: the session loads its last
        checkpoint and restarts the interrupted epoch from its first batch (core/run_state.py)."""
        path = Path(run_dir)
        holder = lock_holder(path)
        if holder is not None:
            self.present_error(failure_title("run_busy"), f"{path} is being trained now by {holder.describe()}.",
                               "Wait for that training to end, or stop it, then resume.", "")
            return False
        if not runs.is_run_dir(path) or not runs.checkpoint_paths(path)[1].is_file():
            self.present_error("Cannot resume", f"{path} has no checkpoint to resume from.",
                               "Choose a run folder that trained at least one epoch or was stopped with Stop.", "")
            return False
        try:
            config = cfg.load(path / runs.CONFIG_FILE)
        except (OSError, cfg.ConfigError) as exc:
            self.present_error("Cannot resume", f"{path / runs.CONFIG_FILE} cannot be read.",
                               "Start a new run instead.", str(exc))
            return False
        return self.start(resume_from=str(path), config=config)

    def open_run(self, run_dir: str) -> bool:
        """Show a past run re-plotted from its events.jsonl (the live run, if any, keeps going)."""
        try:
            model = replay_run(run_dir)
        except (OSError, ValueError) as exc:
            self.present_error("Cannot open the run", str(exc), "Choose a folder made by a training run.", "")
            return False
        self.shown = model
        self.view.clear()
        self.view.render(model, force=True)
        self._select_history(run_dir)
        self._update_controls()
        return True

    def show_live(self) -> None:
        self.shown = self.live
        self.view.clear()
        self.view.render(self.live, force=True)
        self._select_history(self.live.run_dir)
        self._update_controls()

    def _select_history(self, run_dir: str | None) -> None:
        """Highlight the run the plots show (none while a new run has no folder yet)."""
        self.history.blockSignals(True)
        self.history.clearSelection()
        self.history.setCurrentItem(None)
        for i in range(self.history.count()):
            item = self.history.item(i)
            if run_dir and Path(item.data(Qt.ItemDataRole.UserRole)) == Path(run_dir):
                self.history.setCurrentItem(item)
                item.setSelected(True)
                break
        self.history.blockSignals(False)

    def open_run_folder(self) -> None:
        if self.shown.run_dir:
            self.open_url(QUrl.fromLocalFile(self.shown.run_dir))

    def open_best_model(self) -> None:
        bundle = self.best_bundle()
        if bundle:
            self.open_in_viewer.emit(bundle)

    def status_line(self) -> str:
        """Epoch, progress and ETA of the live run for the status bar ("" when no run is going)."""
        if not self.is_training():
            return ""
        live = self.live
        if live.status != "running" or not live.total_epochs:
            return "Training: starting…"
        eta = live.remaining_s()
        text = f"Training: epoch {live.epoch or 1}/{live.total_epochs} · {100 * live.overall_progress:.0f}%"
        return text + (f" · ETA {format_duration(eta)}" if eta is not None else "")

    # ---- the runner's events --------------------------------------------------------------------
    def _apply_events(self, events: list) -> None:
        """One batch from the runner's pump into the live model, then one redraw (≤ 10 times/s)."""
        started = any(isinstance(e, RunStarted) for e in events)
        if events:
            self.live.apply_many(events)
        if self.shown is self.live:
            self.view.render(self.live)
            self.view.tick(self.live)  # the ETA counts down between events (validation sends none)
        if started and self.live.run_dir:
            self.refresh_history()  # the new run is listed (and highlighted) from its start
            if self.shown is self.live:
                self._select_history(self.live.run_dir)
        if events:
            self._update_controls()
        self.run_status.emit(self.status_line())

    def _on_run_ended(self, result: RunFinished | RunFailed) -> None:
        if not self.live.is_terminal:  # the terminal event never reached the queue (should not happen)
            self.live.apply(result)
            if self.shown is self.live:
                self.view.render(self.live)
        self.last_result = result
        self.refresh_history()
        if self.shown is self.live:
            self._select_history(self.live.run_dir)
        self._update_controls()
        self.run_status.emit("")
        self.training_changed.emit(False)
        window = self._close_window_after_stop
        if window is not None:
            self._close_window_after_stop = None
            window.close()
            return
        if isinstance(result, RunFailed):
            self.present_error(failure_title(result.kind), result.reason, hint_for(result), result.detail)

    # ---- history -------------------------------------------------------------------------------
    def _output_dir(self) -> Path:
        return Path(self.state.config.training.output_dir).expanduser()

    def refresh_history(self) -> None:
        root = self._output_dir()
        self._history_root = root
        self.history_folder.setText(f"in {root}")
        selected = self._selected_run()
        keep = selected.data(Qt.ItemDataRole.UserRole) if selected is not None else None
        self.history.blockSignals(True)
        self.history.clear()
        live_dir = Path(self.live.run_dir) if self.is_training() and self.live.run_dir else None
        for summary in runs.list_runs(root):
            running = live_dir is not None and Path(summary.run_dir) == live_dir
            line = summary_line(summary.status, summary.epochs_done, summary.steps_done, summary.last_epoch,
                                summary.best_f1, running=running)
            item = QListWidgetItem(f"{summary.name}\n{line}")
            item.setData(Qt.ItemDataRole.UserRole, str(summary.run_dir))
            item.setData(ROLE_STATE, ("running" if running else summary.status, summary.epochs_done,
                                      summary.can_resume and not running))
            item.setToolTip(str(summary.run_dir))
            self.history.addItem(item)
        self.history.blockSignals(False)
        if keep:
            self._select_history(keep)
        self._update_controls()

    def _history_activated(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path and self.is_training() and self.live.run_dir and Path(path) == Path(self.live.run_dir):
            if self.shown is not self.live:
                self.show_live()
            return
        if path and (self.shown.run_dir is None or Path(self.shown.run_dir) != Path(path)
                     or self.shown is self.live):
            self.open_run(path)

    # ---- closing the window --------------------------------------------------------------------
    def handle_close(self, window: QWidget) -> bool:
        """Called when ``window`` is asked to close; True lets it close now.

        During a run: ask; on yes, stop cooperatively and close the window once the run has ended
        (the window stays responsive meanwhile). If the run does not end in ``close_timeout_ms``,
        wait a little more and close anyway.
        """
        if not self.is_training() or self._force_closing:
            return True
        if self._close_window_after_stop is not None:
            return False  # already stopping for a close
        if not self.confirm("Training is running",
                            "A training run is still going. Stop it (a checkpoint is saved) and quit?"):
            return False
        self._close_window_after_stop = window
        self.stop()
        QTimer.singleShot(self.close_timeout_ms, lambda: self._force_close(window))
        return False

    def _force_close(self, window: QWidget) -> None:
        if self._close_window_after_stop is None:
            return
        self.runner.wait(5000)
        self._close_window_after_stop = None
        self._force_closing = True
        window.close()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop and wait (blocking) — for app exit paths that cannot wait for the event loop."""
        if not self.is_training():
            return True
        self.runner.stop()
        return self.runner.wait(timeout_ms)

    # ---- default dialogs -----------------------------------------------------------------------
    def _error_dialog(self, title: str, reason: str, hint: str, detail: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Critical, title, reason, QMessageBox.StandardButton.Ok, self)
        if hint:
            box.setInformativeText(f"What to do: {hint}")
        if detail:
            box.setDetailedText(detail)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # window-modal but not blocking: the event loop (and the plots) keep running
        self._last_dialog = box

    def _confirm_dialog(self, title: str, question: str) -> bool:
        from PySide6.QtGui import QGuiApplication

        if QGuiApplication.platformName() in ("offscreen", "minimal"):
            return True  # nobody can answer a modal there (CI, tests, --self-test): stop and close
        answer = QMessageBox.question(self, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes


class CloseGuard(QObject):
    """Event filter on the main window: a close during training goes through ``TrainingTab.handle_close``."""

    def __init__(self, tab: TrainingTab, window: QWidget):
        super().__init__(window)
        self.tab = tab
        self.window = window

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if obj is self.window and event.type() == QEvent.Type.Close:
            if not self.tab.handle_close(self.window):
                event.ignore()
                return True
        return False
