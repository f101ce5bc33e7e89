"""gui.workers.Task: the one background-task primitive (outcomes, stop, keep-alive)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject  # noqa: E402

from medseg_gui.core.tools.trial_run import ToolCancelled, ToolError  # noqa: E402
from medseg_gui.gui import workers  # noqa: E402
from medseg_gui.gui.workers import Task  # noqa: E402


def test_result_and_progress_arrive_on_the_gui_thread(qtbot):
    seen: list[tuple[int, int]] = []
    threads: list[threading.Thread] = []

    def fn(progress, stop):
        progress(1, 2)
        progress(2, 2)
        return 42

    task = Task(fn, "answer")
    task.progressed.connect(lambda done, total: (seen.append((done, total)), threads.append(threading.current_thread())))
    with qtbot.waitSignal(task.ended, timeout=30_000):
        with qtbot.waitSignal(task.succeeded, timeout=30_000) as got:
            task.start()
    assert got.args == [42] and seen == [(1, 2), (2, 2)]
    assert all(t is threading.main_thread() for t in threads)


def test_errors_become_one_message_never_a_raise(qtbot):
    def worded(progress, stop):
        raise ToolError("the dataset has no masks")

    def unexpected(progress, stop):
        raise KeyError("boom")

    for fn, expected, has_detail in ((worded, "the dataset has no masks", False), (unexpected, "boom", True)):
        task = Task(fn)
        with qtbot.waitSignal(task.failed, timeout=30_000) as got:
            task.start()
        message, detail = got.args
        assert expected in message and bool(detail) == has_detail
        assert task.wait(30_000)


def test_cancel_reaches_the_function_and_the_on_cancel_hook(qtbot):
    entered = threading.Event()
    hooked: list[bool] = []

    def fn(progress, stop):
        entered.set()
        if not stop.wait(60):
            return "not stopped"
        raise ToolCancelled("cancelled")

    task = Task(fn, on_cancel=lambda: hooked.append(True))
    outcomes: list[str] = []
    task.succeeded.connect(lambda _r: outcomes.append("succeeded"))
    task.cancelled.connect(lambda: outcomes.append("cancelled"))
    task.start()
    qtbot.waitUntil(entered.is_set, timeout=30_000)
    with qtbot.waitSignal(task.ended, timeout=30_000):
        task.cancel()
    assert outcomes == ["cancelled"] and hooked == [True] and task.cancel_requested


def test_a_deleted_owner_gets_no_late_result_and_the_thread_is_kept_alive(qtbot):
    """Closing a dialog while its task runs must neither abort the process nor call into the dialog."""
    release = threading.Event()
    owner = QObject()
    late: list[object] = []

    def fn(progress, stop):
        release.wait(60)
        return "late"

    task = Task(fn, "orphan", owner)
    task.succeeded.connect(late.append)
    task.start()
    assert workers.running_tasks() >= 1
    owner.deleteLater()
    qtbot.waitUntil(lambda: not _alive(task), timeout=30_000)  # the handle went with its owner
    release.set()
    assert workers.cancel_all(30_000)
    qtbot.waitUntil(lambda: workers.running_tasks() == 0, timeout=30_000)
    assert late == []


def _alive(obj: QObject) -> bool:
    import shiboken6

    return shiboken6.isValid(obj)


def test_cancel_all_passes_the_stop_on_like_cancel(qtbot):
    """At exit every task is stopped, training too: its stop must reach the session, not only the event."""
    session_stop = threading.Event()  # what the training session would watch, not the task's event

    task = Task(lambda progress, stop: session_stop.wait(60), "long-run", on_cancel=session_stop.set)
    task.start()
    assert workers.cancel_all(30_000)
    assert session_stop.is_set() and not task.is_running()
