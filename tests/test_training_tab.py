"""Training tab (pytest-qt, offscreen): real tiny runs, stop/resume, re-plot, failures, closing, throttling."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core import config as cfg  # noqa: E402
from medseg_gui.core import events as ev  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402
from medseg_gui.gui.training.tab import TrainingTab  # noqa: E402
from medseg_gui.gui.training.worker import InProcessWorker, TrainingRunner  # noqa: E402
from tests.training_tab_helpers import demo_run_config  # noqa: E402


class Errors:
    """Injected error presenter: records instead of opening a modal dialog."""

    def __init__(self):
        self.calls: list[tuple[str, str, str, str]] = []

    def __call__(self, title, reason, hint, detail):
        self.calls.append((title, reason, hint, detail))


def make_tab(qtbot, config, *, session_factory=None, interval=0.0, **kwargs):
    factory = partial(InProcessWorker, session_kwargs={"step_event_interval_s": interval},
                      session_factory=session_factory)
    runner = TrainingRunner(in_process_factory=factory)
    errors = Errors()
    tab = TrainingTab(AppState(config), runner, error_presenter=errors, **kwargs)
    qtbot.addWidget(tab)
    tab.show()
    return tab, errors


def curve_len(curve) -> int:
    x, _ = curve.getData()
    return 0 if x is None else len(x)


# ---- a fake session: the transport and the UI without torch ------------------------------------------------
class FakeSession:
    """Emits step events as fast as asked until stopped (or ``steps`` are done); optional failure."""

    def __init__(self, config, sink, run_dir=None, resume_from=None, *, steps=10**9, sleep=0.0, raise_exc=None,
                 step_event_interval_s=0.0, **_):
        self.sink, self.steps, self.sleep, self.raise_exc = sink, steps, sleep, raise_exc
        self._stop = threading.Event()
        self.config = config

    def stop(self):
        self._stop.set()

    def run(self):
        self.sink(ev.RunStarted(run_dir="", config=self.config.to_dict(), device="cpu", epochs=1,
                                steps_per_epoch=self.steps, predicted_peak_gb=2.0, vram_total_gb=8.0))
        if self.raise_exc is not None:
            raise self.raise_exc
        step = 0
        while not self._stop.is_set() and step < self.steps:
            step += 1
            self.sink(ev.StepMetrics(step=step, epoch=1, loss=1.0 / step, lr=1e-3, images_per_s=100.0,
                                     eta_s=10.0, epoch_progress=step / self.steps))
            if self.sleep:
                time.sleep(self.sleep)
        result = ev.RunFinished(run_dir="", stopped_early=self._stop.is_set(), steps_done=step)
        self.sink(result)
        return result


def fake_factory(**kw):
    return lambda config, sink, **rest: FakeSession(config, sink, **{**rest, **kw})


# ---- real tiny runs --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_start_stop_checkpoint_resume_and_replot(qtbot, tmp_path):
    config = demo_run_config(tmp_path, epochs=3, steps_per_epoch=3)
    tab, errors = make_tab(qtbot, config)
    assert tab.start()
    assert tab.is_training() and not tab.start_button.isEnabled()
    qtbot.waitUntil(lambda: curve_len(tab.view.loss_raw) >= 2, timeout=120_000)
    assert curve_len(tab.view.lr) >= 2
    tab.stop()
    assert tab.stop_button.text() == "Stopping…" and not tab.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not tab.is_training(), timeout=60_000)
    assert errors.calls == []
    result = tab.last_result
    assert isinstance(result, ev.RunFinished) and result.stopped_early, result
    run_dir = Path(result.run_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert tab.live.status == "stopped" and tab.folder_button.isEnabled()
    assert tab.history.count() == 1
    stopped_steps = result.steps_done

    # resume the stopped run to its end: the bundle is exported and can go to the viewer
    assert tab.resume(str(run_dir))
    qtbot.waitUntil(lambda: not tab.is_training(), timeout=180_000)
    assert errors.calls == [], errors.calls
    assert isinstance(tab.last_result, ev.RunFinished) and not tab.last_result.stopped_early
    assert tab.live.epochs.epoch == [1, 2, 3]  # the stopped part comes from events.jsonl, the rest live
    x_live, _ = tab.live.loss.arrays()
    assert x_live[0] == 1 and len(x_live) == len(set(x_live)), "the plot continues the stopped run"
    assert curve_len(tab.view.val_loss) == 3 and curve_len(tab.view.f1) == 3
    assert len(tab.view.dice_curves) == 4
    assert tab.viewer_button.isEnabled()
    with qtbot.waitSignal(tab.open_in_viewer, timeout=1000) as sig:
        tab.viewer_button.click()
    assert Path(sig.args[0]) == run_dir / "bundle"

    # re-open the run from its events.jsonl: the same plots, steps not doubled by the resume
    tab.show_live()
    assert tab.open_run(str(run_dir))
    shown = tab.shown
    assert shown is not tab.live and shown.status == "finished"
    x, _ = shown.loss.arrays()
    assert len(x) == len(set(x)) and x[-1] >= stopped_steps
    assert curve_len(tab.view.loss_raw) == len(x) and curve_len(tab.view.f1) == 3
    assert tab.view.status_label.text() == "Finished"


def test_unreadable_dataset_shows_error_and_ui_stays_usable(qtbot, tmp_path):
    config = cfg.RunConfig()
    config.dataset.path = str(tmp_path / "no-such-dataset")
    config.training.output_dir = str(tmp_path / "runs")
    config.training.accelerator = "cpu"
    tab, errors = make_tab(qtbot, config)
    assert tab.start()
    qtbot.waitUntil(lambda: not tab.is_training(), timeout=30_000)
    assert len(errors.calls) == 1
    title, reason, hint, _ = errors.calls[0]
    assert title == "Dataset problem" and "no-such-dataset" in reason and "dataset check" in hint
    assert tab.live.status == "failed" and "Failed" in tab.view.status_label.text()
    assert "error" in tab.view.log_view.toPlainText() or reason.split(":")[0] in tab.view.log_view.toPlainText()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()
    # usable: a second attempt runs again and fails the same way, no crash, no frozen state
    assert tab.start()
    qtbot.waitUntil(lambda: len(errors.calls) == 2, timeout=30_000)


def test_bad_dataset_report_blocks_start(qtbot, tmp_path):
    """Masks with values outside the classes: the validation report stops the run before a run folder."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "bad"
    for split in ("train", "valid"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / split / "images" / f"a{i}.png")
            Image.fromarray(np.full((32, 32), 9, np.uint8)).save(root / split / "masks" / f"a{i}.png")
    config = cfg.RunConfig()
    config.dataset.path = str(root)
    config.training.output_dir = str(tmp_path / "runs")
    tab, errors = make_tab(qtbot, config)
    assert tab.start()
    qtbot.waitUntil(lambda: bool(errors.calls), timeout=30_000)
    title, reason, _, detail = errors.calls[0]
    assert title == "Dataset problem" and "cannot be used" in reason and "a0.png" in detail
    assert not (tmp_path / "runs").exists()


def test_invalid_config_shows_problems_instead_of_starting(qtbot, tmp_path):
    config = cfg.RunConfig()
    config.training.batch_size = 0
    config.training.output_dir = str(tmp_path / "runs")
    tab, errors = make_tab(qtbot, config)
    assert not tab.start()
    assert not tab.is_training()
    assert tab.problems_label.isVisible() and "training.batch_size" in tab.problems_label.text()


def test_oom_failure_dialog_suggests_smaller_batch(qtbot, tmp_path):
    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    tab, errors = make_tab(qtbot, config, session_factory=fake_factory(
        raise_exc=RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")))
    tab.runner.in_process_factory = partial(tab.runner.in_process_factory, check_data=False)
    assert tab.start()
    qtbot.waitUntil(lambda: bool(errors.calls), timeout=10_000)
    title, reason, hint, detail = errors.calls[0]
    assert title == "Out of GPU memory" and "batch size" in hint and "RuntimeError" in detail
    assert tab.start_button.isEnabled()


def test_redraws_are_throttled_and_window_stays_responsive(qtbot, tmp_path):
    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    tab, errors = make_tab(qtbot, config, session_factory=fake_factory(sleep=0.0002))
    tab.runner.in_process_factory = partial(tab.runner.in_process_factory, check_data=False)
    ticks: list[float] = []
    from PySide6.QtCore import QTimer

    probe = QTimer()
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start(10)
    assert tab.start()
    qtbot.wait(1500)
    probe.stop()
    redraws = tab.view.redraws
    tab.stop()
    qtbot.waitUntil(lambda: not tab.is_training(), timeout=10_000)
    assert tab.live.step > 500, "the fake run produced many events"
    assert redraws <= 17, f"{redraws} redraws in 1.5 s"  # ≤ 10/s (plus the final one)
    # Responsiveness without a wall-clock race: a 10 ms timer must keep firing through the run (a blocked
    # loop would fire it a handful of times), and no gap may approach the whole window. Generous bounds,
    # since a loaded 2-core machine can stall any process for a few hundred milliseconds.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 20, f"the event loop ran the 10 ms timer only {len(ticks)} times in 1.5 s"
    assert max(gaps) < 1.2, f"event loop blocked for {max(gaps):.2f} s"
    assert isinstance(tab.last_result, ev.RunFinished) and tab.last_result.stopped_early


def test_close_during_training_asks_then_stops(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow

    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    window = MainWindow(AppState(config), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    tab = window.page("Training")
    assert isinstance(tab, TrainingTab)
    tab.runner.in_process_factory = partial(InProcessWorker, check_data=False,
                                            session_factory=fake_factory(sleep=0.001))
    errors = Errors()
    tab.present_error = errors
    answers = [False, True]
    asked = []
    tab.confirm = lambda title, q: (asked.append(q), answers.pop(0))[1]
    tab.start_gate = None  # the pre-flight gate (gui/tools) defers Start; it is tested in test_tools_gui
    window.show()
    assert tab.start()
    qtbot.waitUntil(lambda: tab.live.step > 5, timeout=10_000)
    window.close()  # "no": keeps training
    assert window.isVisible() and tab.is_training() and len(asked) == 1
    window.close()  # "yes": stops, then closes once the run has ended
    assert len(asked) == 2
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert not tab.is_training() and tab.live.status == "stopped" and errors.calls == []


def test_file_open_run_replots_in_the_training_page(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow

    run = tmp_path / "runs" / "20240101-000000_b0_demo"
    (run / "checkpoints").mkdir(parents=True)
    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    cfg.save(config, run / "config.toml")
    with open(run / "events.jsonl", "w", encoding="utf-8") as fh:
        w = ev.JsonlWriter(fh)
        w(ev.RunStarted(run_dir=str(run), config=config.to_dict(), device="cpu", epochs=1, steps_per_epoch=3))
        for s in (1, 2, 3):
            w(ev.StepMetrics(step=s, epoch=1, loss=1.0 / s, lr=1e-3))
        w(ev.EpochMetrics(epoch=1, step=3, train_loss=0.5, val_loss=0.4, val_f1=0.7,
                          per_class_dice=[0.9, 0.6, 0.5, 0.8]))
        w(ev.RunFinished(run_dir=str(run), stopped_early=False, best_f1=0.7, epochs_done=1, steps_done=3))
    window = MainWindow(AppState(config), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    tab = window.page("Training")
    assert tab.history.count() == 1
    window.open_run(str(run))
    assert window.current_page() == "Training"
    assert curve_len(tab.view.loss_raw) == 3 and curve_len(tab.view.f1) == 1
    assert [c.name() for c in tab.view.dice_curves] == config.dataset.class_names
    assert tab.view.status_label.text() == "Finished"


def test_open_in_viewer_is_routed_to_the_viewer_page(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow

    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    window = MainWindow(AppState(config), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    loaded: list[str] = []
    window.viewer.load_model_and_run = loaded.append  # the model loads and runs on the open image
    window.training_tab.open_in_viewer.emit(str(tmp_path / "bundle"))
    assert loaded == [str(tmp_path / "bundle")] and window.current_page() == "Viewer"
