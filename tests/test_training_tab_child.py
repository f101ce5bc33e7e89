"""The several-GPU transport: a child process's JSON lines become the same events and state as in-process."""

from __future__ import annotations

import sys
import textwrap
from functools import partial

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core import config as cfg  # noqa: E402
from medseg_gui.core import events as ev  # noqa: E402
from medseg_gui.core.live_metrics import LiveMetrics  # noqa: E402
from medseg_gui.gui.training.worker import ChildProcessWorker, TrainingRunner  # noqa: E402

FAKE_CHILD = textwrap.dedent('''
    import json, sys, time
    mode = sys.argv[1]

    def say(kind, **data):
        data["type"] = kind
        data.setdefault("time", time.time())
        print(json.dumps(data), flush=True)

    say("RunStarted", run_dir="/tmp/fake-run", config={"dataset": {"class_names": ["bg", "x"]}}, device="2 x GPU",
        epochs=1, steps_per_epoch=100, predicted_peak_gb=3.5, vram_total_gb=24.0)
    print("a library printed this", flush=True)
    if mode == "finish":
        for s in range(1, 6):
            say("StepMetrics", step=s, epoch=1, loss=1.0 / s, lr=1e-3, images_per_s=50.0, eta_s=1.0,
                epoch_progress=s / 5)
            say("VramSample", step=s, allocated_gb=1.0, reserved_gb=1.5, device_used_gb=2.0, device_total_gb=24.0)
        print('{"type": "NotAnEvent"}', flush=True)
        print('{"type": "StepMetrics", "step": 6', flush=True)  # broken line
        say("EpochMetrics", epoch=1, step=5, train_loss=0.4, val_loss=0.5, val_f1=0.6, per_class_dice=[0.9, 0.3])
        say("RunFinished", run_dir="/tmp/fake-run", stopped_early=False, best_f1=0.6, epochs_done=1, steps_done=5)
    elif mode == "stop":
        import threading
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline().strip() == "stop") and stop.set(), daemon=True).start()
        s = 0
        while not stop.is_set() and s < 3000:
            s += 1
            say("StepMetrics", step=s, epoch=1, loss=1.0, lr=1e-3)
            time.sleep(0.01)
        say("RunFinished", run_dir="/tmp/fake-run", stopped_early=stop.is_set(), steps_done=s)
    elif mode == "crash":
        say("StepMetrics", step=1, epoch=1, loss=1.0, lr=1e-3)
        print("Traceback (most recent call last):", file=sys.stderr)
        print("RuntimeError: NCCL error: unhandled system error", file=sys.stderr, flush=True)
        sys.exit(3)
    elif mode == "ignore":
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            say("StepMetrics", step=1, epoch=1, loss=1.0, lr=1e-3)
            time.sleep(0.05)
''')


@pytest.fixture
def fake_child(tmp_path):
    path = tmp_path / "fake_child.py"
    path.write_text(FAKE_CHILD, encoding="utf-8")
    return path


def run_child(qtbot, script, mode, *, stop_after=None, timeout=20_000, **worker_kwargs):
    config = cfg.RunConfig()
    config.training.devices = 2
    assert TrainingRunner.uses_child_process(config)
    runner = TrainingRunner(child_factory=partial(ChildProcessWorker, command=[sys.executable, str(script), mode],
                                                  check_data=False, **worker_kwargs))
    model = LiveMetrics()
    runner.events_arrived.connect(model.apply_many)  # the runner's pump, as the tab and the wizard use it
    with qtbot.waitSignal(runner.ended, timeout=timeout) as sig:
        runner.start(config)
        if stop_after is not None:
            qtbot.waitUntil(lambda: model.step >= stop_after, timeout=timeout)
            runner.stop()
    return sig.args[0], model


def test_child_events_build_the_same_state(qtbot, fake_child):
    result, model = run_child(qtbot, fake_child, "finish")
    assert isinstance(result, ev.RunFinished) and not result.stopped_early
    assert model.status == "finished" and model.device == "2 x GPU"
    x, y = model.loss.arrays()
    assert list(x) == [1, 2, 3, 4, 5] and y[0] == 1.0
    assert model.epochs.val_f1 == [0.6] and model.class_names == ["bg", "x"]
    vx, vy = model.vram_used.arrays()
    assert len(vx) == 5 and vy[0] == 2.0 and model.vram_label == "card used"
    assert model.predicted_peak_gb == 3.5 and model.vram_total_gb == 24.0
    assert any("a library printed this" in e.text for e in model.log)


def test_child_stop_is_cooperative(qtbot, fake_child):
    result, model = run_child(qtbot, fake_child, "stop", stop_after=3)
    assert isinstance(result, ev.RunFinished) and result.stopped_early
    assert model.status == "stopped" and model.step < 3000


def test_child_crash_becomes_run_failed_with_stderr(qtbot, fake_child):
    result, model = run_child(qtbot, fake_child, "crash")
    assert isinstance(result, ev.RunFailed)
    assert "exited with code 3" in result.reason and "NCCL error" in result.reason
    assert "Traceback" in result.detail and model.status == "failed"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_child_ignoring_stop_is_terminated(qtbot, fake_child):
    result, model = run_child(qtbot, fake_child, "ignore", stop_after=1, stop_timeout_s=0.5, kill_timeout_s=1.0)
    assert isinstance(result, ev.RunFinished) and result.stopped_early
    assert any("terminating" in e.text for e in model.log)


def test_missing_executable_is_reported(qtbot, tmp_path):
    config = cfg.RunConfig()
    config.training.devices = 2
    runner = TrainingRunner(child_factory=partial(ChildProcessWorker, command=[str(tmp_path / "no-such-python")],
                                                  check_data=False))
    with qtbot.waitSignal(runner.ended, timeout=10_000) as sig:
        runner.start(config)
    assert isinstance(sig.args[0], ev.RunFailed) and "cannot start" in sig.args[0].reason


@pytest.mark.slow
def test_real_medseg_train_child_streams_and_stops(qtbot, tmp_path):
    """End to end with the real `medseg train --events-json --stop-on-stdin` on a tiny CPU run."""
    from pathlib import Path

    from tests.training_tab_helpers import demo_run_config

    config = demo_run_config(tmp_path, epochs=20, steps_per_epoch=3)
    runner = TrainingRunner(in_process_factory=ChildProcessWorker)  # the child transport on one device
    model = LiveMetrics()
    runner.events_arrived.connect(model.apply_many)
    with qtbot.waitSignal(runner.ended, timeout=180_000) as sig:
        runner.start(config)
        qtbot.waitUntil(lambda: model.step >= 1, timeout=170_000)
        runner.stop()
    result = sig.args[0]
    assert isinstance(result, ev.RunFinished) and result.stopped_early, result
    assert model.status == "stopped" and model.device == "cpu"
    assert (Path(result.run_dir) / "checkpoints" / "last.ckpt").is_file()
