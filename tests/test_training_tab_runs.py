"""The runs list and the run's presence outside its page: a new run is listed and highlighted from its
start, a mid-epoch stop reads "21 steps, stopped in epoch 1", Resume works from the list and says what
it does, a status-bar item follows the run, disabled buttons say why."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, Qt, Signal  # noqa: E402
from PySide6.QtWidgets import QMainWindow  # noqa: E402

from medseg_gui.core import events as ev  # noqa: E402
from medseg_gui.core import runs  # noqa: E402
from medseg_gui.core.run_state import progress_words, summary_line  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402
from medseg_gui.gui.training import run_status_item  # noqa: E402
from medseg_gui.gui.training.tab import TrainingTab  # noqa: E402
from medseg_gui.gui.training.worker import InProcessWorker, TrainingRunner  # noqa: E402
from tests.training_tab_helpers import demo_run_config  # noqa: E402


class StepSession:
    """Writes a real run folder (config, events.jsonl, last.ckpt on stop) and emits steps of epoch 1
    until stopped: the list, resume and status bar see what a real session leaves behind."""

    sessions: list["StepSession"] = []

    def __init__(self, config, sink, run_dir=None, resume_from=None, **_):
        self.config, self.user_sink, self.resume_from = config, sink, resume_from
        self._stop = threading.Event()
        self.steps_done = threading.Semaphore(0)
        StepSession.sessions.append(self)

    def stop(self):
        self._stop.set()

    def run(self):
        run_dir = Path(self.resume_from) if self.resume_from else runs.create_run_dir(self.config)
        with open(run_dir / runs.EVENTS_FILE, "a", encoding="utf-8") as fh:
            writer = ev.JsonlWriter(fh)

            def sink(event):
                writer(event)
                self.user_sink(event)

            sink(ev.RunStarted(run_dir=str(run_dir), config=self.config.to_dict(), device="cpu", epochs=3,
                               steps_per_epoch=40, train_images=80, val_images=20))
            step = 0
            while not self._stop.is_set() and step < 21:
                step += 1
                sink(ev.StepMetrics(step=step, epoch=1, loss=1.0, lr=3e-4, epoch_progress=step / 40))
            self._stop.wait(30)  # "still training" until the test stops it
            runs.checkpoint_paths(run_dir)[1].write_bytes(b"stand-in")
            result = ev.RunFinished(run_dir=str(run_dir), stopped_early=True, epochs_done=0, steps_done=step)
            sink(result)
        return result


@pytest.fixture
def tab(qtbot, tmp_path):
    config = demo_run_config(tmp_path)
    factory = partial(InProcessWorker, session_kwargs={}, session_factory=StepSession)
    t = TrainingTab(AppState(config), TrainingRunner(in_process_factory=factory),
                    error_presenter=lambda *a: None)
    qtbot.addWidget(t)
    t.show()
    yield t
    t.shutdown()


def test_words_for_a_stop_mid_epoch():
    assert progress_words(0, 21, 1, stopped=True) == "21 steps, stopped in epoch 1"
    assert progress_words(2, 95, 3, stopped=True) == "2 epochs + 95 steps, stopped in epoch 3"
    assert progress_words(5, 200, 5, stopped=False) == "5 epochs"
    assert progress_words(1, 40, 1, stopped=False) == "1 epoch"
    assert summary_line("finished", 5, 200, 5, 0.8123) == "finished · 5 epochs · mean Dice 0.812"


def test_run_listed_at_start_stopped_mid_epoch_resumed_from_the_list(tab, qtbot):
    assert not tab.resume_button.isEnabled() and "Select" in tab.resume_button.toolTip()
    assert not tab.viewer_button.isEnabled() and "No model yet" in tab.viewer_button.toolTip()
    assert tab.start()
    qtbot.waitUntil(lambda: tab.live.step == 21 and tab.history.count() == 1, timeout=60_000)
    item = tab.history.item(0)
    assert "training now" in item.text() and item.isSelected()  # listed and highlighted while it runs
    assert tab.status_line().startswith("Training: epoch 1/3") and "ETA" in tab.status_line()
    assert not tab.start_button.isEnabled() and "stop it first" in tab.start_button.toolTip()
    with qtbot.waitSignal(tab.runner.ended, timeout=60_000):
        tab.stop()
    qtbot.waitUntil(lambda: not tab.is_training(), timeout=10_000)
    item = tab.history.item(0)
    assert "stopped · 21 steps, stopped in epoch 1" in item.text()
    header = tab.view.status_label.text()
    assert "21 steps, stopped in epoch 1" in header and "Resume restarts epoch 1" in header
    assert tab.status_line() == ""
    tab.history.setCurrentItem(item)
    item.setSelected(True)
    assert tab.resume_button.isEnabled() and "Resume restarts epoch 1" in tab.resume_button.toolTip()
    run_dir = item.data(Qt.ItemDataRole.UserRole)
    before = len(StepSession.sessions)
    assert tab.resume_selected()  # the list is rebuilt as the run restarts: keep no item across it
    qtbot.waitUntil(lambda: len(StepSession.sessions) > before, timeout=30_000)
    assert StepSession.sessions[-1].resume_from == run_dir
    qtbot.waitUntil(lambda: tab.history.count() == 1 and "training now" in tab.history.item(0).text(), timeout=30_000)
    with qtbot.waitSignal(tab.runner.ended, timeout=60_000):
        tab.stop()


class _StatusSource(QObject):
    """Only the tab's run_status signal (a real tab emits it from drain())."""
    run_status = Signal(str)


def test_status_bar_item_follows_the_run(qtbot):
    window = QMainWindow()
    shown = []
    qtbot.addWidget(window)
    fake = _StatusSource()
    item = run_status_item(fake, lambda: shown.append("Training"))
    window.statusBar().addPermanentWidget(item)
    assert item.isHidden()
    fake.run_status.emit("Training: epoch 2/5 · 43% · ETA 3 min 10 s")
    assert not item.isHidden() and "ETA 3 min 10 s" in item.text()
    item.click()
    assert shown == ["Training"]
    fake.run_status.emit("")
    assert item.isHidden()

