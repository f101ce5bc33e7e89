"""Wizard step 4: the run itself, with the Training tab's live view and worker.

The page reuses ``TrainingRunner`` (worker thread or child process, and the event pump) and
``LiveView`` over a core ``LiveMetrics``, exactly as the Training tab does. With the progressive
plan, one worker runs both stages (``core.tools.plan_session.PlanSession``); each stage's RunStarted resets the
plots, so the full run is not drawn over the quick check's steps. While a run goes, Back is replaced
by Stop; Cancel stops the run cooperatively and closes the wizard once it has ended.
"""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget, QWizardPage

from medseg_gui.core import runs
from medseg_gui.core.engine.failures import hint_for
from medseg_gui.core.events import Event, RunFailed, RunFinished, RunStarted
from medseg_gui.core.live_metrics import LiveMetrics
from medseg_gui.core.run_state import plural
from medseg_gui.core.headline import HEADLINE_METRIC
from medseg_gui.core.tools.plan_session import PlanSession
from medseg_gui.gui.state import AppState
from medseg_gui.gui.training.live_view import LiveView
from medseg_gui.gui.training.worker import InProcessWorker, TrainingRunner


def plan_worker_factory(session_factory=None, check_steps: int | None = None, **worker_kwargs: Any):
    """An ``in_process_factory`` for TrainingRunner that runs the progressive plan."""
    kwargs = dict(worker_kwargs.pop("session_kwargs", {}) or {})
    return partial(InProcessWorker, session_factory=partial(PlanSession, inner_factory=session_factory,
                                                           check_steps=check_steps),
                   session_kwargs=kwargs, **worker_kwargs)


class TrainingPage(QWizardPage):
    running_changed = Signal(bool)

    def __init__(self, state: AppState, use_plan, runner_factory=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._use_plan = use_plan  # callable: the progressive-plan tick box of step 3
        self.runner_factory = runner_factory or (lambda plan: TrainingRunner(
            self, in_process_factory=plan_worker_factory() if plan else None))
        self.runner: TrainingRunner | None = None
        self.live = LiveMetrics()
        self.result: RunFinished | RunFailed | None = None
        self.bundle: str | None = None
        self.stage = 0
        self.stages = 1
        self.setTitle("Training")
        self.setSubTitle("Loss, Dice per class, GPU memory and speed update live. Stop ends the run after this "
                         "batch and keeps the best model so far.")
        layout = QVBoxLayout(self)
        self.stage_label = QLabel()
        self.stage_label.setProperty("role", "cardTitle")
        layout.addWidget(self.stage_label)
        self.outcome = QLabel()
        self.outcome.setWordWrap(True)
        self.outcome.setProperty("role", "banner")
        self.outcome.setVisible(False)
        layout.addWidget(self.outcome)
        self.view = LiveView()
        layout.addWidget(self.view, 1)

    # ----- life cycle ----------------------------------------------------------------------------
    def initializePage(self) -> None:  # noqa: N802 (Qt naming)
        self.start()

    def is_running(self) -> bool:
        return self.runner is not None and self.runner.is_running()

    def start(self) -> bool:
        if self.is_running():
            return False
        config = self.state.config.copy()
        plan = bool(self._use_plan())
        self.stages, self.stage = (2 if plan else 1), 0
        self.result, self.bundle = None, None
        self.live.reset()
        self.view.clear()
        self.outcome.setVisible(False)
        self.runner = self.runner_factory(plan)  # a fresh one: plan or not may differ from the last run
        self.runner.events_arrived.connect(self._apply_events)
        self.runner.ended.connect(self._ended)
        self.runner.start(config)
        self._stage_text("Starting (checking the data, loading the model)…")
        self.running_changed.emit(True)
        self.completeChanged.emit()
        return True

    def stop(self) -> None:
        if self.is_running():
            self.runner.stop()
            self._stage_text("Stopping after this batch (a checkpoint is saved)…")

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the run has ended (app exit); True if it did."""
        if self.runner is None:
            return True
        return self.runner.wait(timeout_ms)

    def isComplete(self) -> bool:  # noqa: N802
        return not self.is_running() and self.bundle is not None

    # ----- events --------------------------------------------------------------------------------
    def _apply_events(self, events: list[Event]) -> None:
        """One batch from the runner's pump: a new stage's RunStarted clears the plots first."""
        for event in events:
            if isinstance(event, RunStarted):
                if self.live.run_dir is not None:  # the next stage of the plan: plot it afresh
                    self.live.reset()
                    self.view.clear()
                self.stage += 1
                self._show_stage()
            self.live.apply(event)
        self.view.render(self.live)
        self.view.tick(self.live)  # the ETA counts down through validation too
        return len(events)

    def _show_stage(self) -> None:
        if self.stages == 1:
            self._stage_text("")  # the page title already says "Training": no second header
        elif self.stage < self.stages:
            self._stage_text(f"Part {self.stage} of {self.stages}: quick check (SegFormer-b0, small "
                                     "images, a few steps)")
        else:
            self._stage_text(f"Part {self.stage} of {self.stages}: the full run")

    def _ended(self, result: RunFinished | RunFailed) -> None:
        if not self.live.is_terminal:
            self.live.apply(result)
            self.view.render(self.live, force=True)
        self.result = result
        self.bundle = find_bundle(result, self.live)
        if isinstance(result, RunFailed):
            self._set_outcome(f"<b>{html.escape(result.reason)}</b><br>What to do: {html.escape(hint_for(result))}"
                              "<br>Press Back to change the configuration, or Cancel.", False)
        elif self.bundle is None:
            self._set_outcome("The run ended before a model was saved (no epoch completed). Press Back and "
                              "start again.", False)
        else:
            best = "n/a" if result.best_f1 is None else f"{result.best_f1:.3f}"
            how = "stopped" if result.stopped_early else "finished"
            self._set_outcome(f"Training {how}: {plural(result.epochs_done, 'epoch')}, "
                              f"{plural(result.steps_done, 'step')} in {result.duration_s:.0f} s; best validation "
                              f"{HEADLINE_METRIC} {best}. Press Next to see its masks.", True)
        self._stage_text("")  # the outcome banner below says how it ended: no second header saying it
        self.running_changed.emit(False)
        self.completeChanged.emit()

    def _stage_text(self, text: str) -> None:
        """The line under the page title; hidden when empty, so no blank header sits above the plots."""
        self.stage_label.setText(text)
        self.stage_label.setVisible(bool(text))

    def _set_outcome(self, text: str, ok: bool) -> None:
        self.outcome.setText(text)
        self.outcome.setProperty("state", "ok" if ok else "bad")
        self.outcome.style().unpolish(self.outcome)
        self.outcome.style().polish(self.outcome)
        self.outcome.setVisible(True)


def find_bundle(result: Any, live: LiveMetrics) -> str | None:
    """The exported model of the run that just ended (the event's, else the run folder's)."""
    candidates = [getattr(result, "bundle_dir", None), live.bundle_dir]
    for run_dir in (getattr(result, "run_dir", None), live.run_dir):
        if run_dir:
            candidates.append(str(Path(run_dir) / runs.BUNDLE_DIR))
    return next((c for c in candidates if c and (Path(c) / runs.BUNDLE_META_FILE).is_file()), None)

