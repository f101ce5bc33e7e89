"""A run that another process is training right now is listed as "training now" (not "incomplete",
which would invite a Resume that the lock then refuses), and Resume refuses it with one clear line.
A lock left by a killed process is stale: the run reads "incomplete" again and can be resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medseg_gui.core import config as cfg
from medseg_gui.core import runs
from medseg_gui.core.run_lock import LOCK_FILE, RunLock, lock_holder, this_host
from medseg_gui.core.run_state import summary_line


def _run(folder: Path, config: cfg.RunConfig) -> Path:
    """A run folder as a stopped run leaves it (made by hand: no training needed)."""
    (folder / runs.CHECKPOINT_DIR).mkdir(parents=True)
    cfg.save(config, folder / runs.CONFIG_FILE)
    runs.checkpoint_paths(folder)[1].write_bytes(b"the user's last state")
    return folder


def _config(tmp_path: Path) -> cfg.RunConfig:
    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    return config


def _holder(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from medseg_gui.core.run_lock import RunLock; "
         f"RunLock({str(run)!r}).acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_holder_sees_a_live_trainer_and_not_a_stale_lock(tmp_path):
    assert lock_holder(tmp_path) is None  # no lock file
    with RunLock(tmp_path):  # this process trains it
        owner = lock_holder(tmp_path)
        assert owner is not None and owner.pid == os.getpid()
    assert lock_holder(tmp_path) is None
    # a lock file naming a live process that does NOT hold the lock (a reused pid): not training
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": this_host(), "started": 1.0}))
    assert lock_holder(tmp_path) is None
    # another host cannot be checked from here: reported as its owner, like acquire() refuses it
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 1.0}))
    assert lock_holder(tmp_path).host == "elsewhere"
    # probing never takes the lock away from the next trainer
    (tmp_path / LOCK_FILE).unlink()
    RunLock(tmp_path).acquire().release()


def test_a_run_being_trained_is_listed_as_training_now_until_its_trainer_dies(tmp_path):
    config = _config(tmp_path)
    run = _run(tmp_path / "runs" / "r1", config)
    assert runs.list_runs(tmp_path / "runs")[0].status == "incomplete"
    holder = _holder(run)
    try:
        (summary,) = runs.list_runs(tmp_path / "runs")
        assert summary.status == "training" and f"process {holder.pid}" in summary.trainer
        assert summary_line(summary.status, 0, 0, 0, None).startswith("training now")
        holder.send_signal(signal.SIGKILL)  # a crash: the lock file stays, stale
        holder.wait(60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(60)
    assert (run / LOCK_FILE).exists()
    (summary,) = runs.list_runs(tmp_path / "runs")
    assert summary.status == "incomplete" and summary.trainer == ""


def test_resume_selected_refuses_a_run_being_trained(qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import Qt

    from medseg_gui.gui.state import AppState
    from medseg_gui.gui.training.tab import TrainingTab
    from medseg_gui.gui.training.worker import TrainingRunner

    config = _config(tmp_path)
    run = _run(tmp_path / "runs" / "r1", config)
    calls = []
    started = []
    tab = TrainingTab(AppState(config), TrainingRunner(in_process_factory=lambda *a, **k: started.append(1)),
                      error_presenter=lambda *args: calls.append(args))
    qtbot.addWidget(tab)
    tab.show()
    holder = _holder(run)
    try:
        tab.refresh_history()
        item = tab.history.item(0)
        assert "training now" in item.text()
        tab.history.setCurrentItem(item)
        item.setSelected(True)
        assert not tab.resume_button.isEnabled() and "being trained now" in tab.resume_button.toolTip()
        assert tab.resume(item.data(Qt.ItemDataRole.UserRole)) is False  # even when asked directly
    finally:
        holder.communicate("", timeout=60)
    assert not started and len(calls) == 1
    title, reason, hint, _ = calls[0]
    assert title == "Run folder in use" and f"process {holder.pid}" in reason and str(run) in reason
    assert "\n" not in reason and hint
    tab.refresh_history()
    assert "incomplete" in tab.history.item(0).text()  # released: resumable again
