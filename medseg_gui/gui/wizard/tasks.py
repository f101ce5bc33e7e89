"""Background jobs of the wizard (dataset check, import, pre-flight) that outlive a closed wizard safely.

The wizard reuses the viewer's ``TaskThread``. A job may still be running when the user presses
Back or Cancel (a dataset check cannot be interrupted half-way); destroying a running QThread aborts
the process, so running jobs are kept here, parent-less, until they end. Each job carries a ticket:
a page ignores results whose ticket is not its latest, so a stale check never overwrites a new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject

from medseg_gui.gui.viewer.worker import TaskFn, TaskThread

_running: set[TaskThread] = set()
_tickets = itertools.count(1)


def _if_alive(owner: QObject, fn: Callable[..., None], *args: Any) -> None:
    if shiboken6.isValid(owner):  # the page may have been deleted with its wizard meanwhile
        fn(*args)


def start_task(owner: QObject, fn: TaskFn, on_done: Callable[[int, Any], None],
               on_failed: Callable[[int, str], None], name: str = "wizard-task",
               on_progress: Callable[[int, int], None] | None = None) -> tuple[int, TaskThread]:
    """Run ``fn(progress, should_stop)`` in a thread; callbacks (on ``owner``, skipped once it is
    deleted) get ``(ticket, result | message)``."""
    ticket = next(_tickets)
    task = TaskThread(fn, name=name)
    _running.add(task)
    task.succeeded.connect(lambda result: _if_alive(owner, on_done, ticket, result))
    task.failed.connect(lambda message, _trace: _if_alive(owner, on_failed, ticket, message))
    if on_progress is not None:
        task.progressed.connect(lambda done, total: _if_alive(owner, on_progress, done, total))
    task.finished.connect(lambda: _finished(task))
    task.start()
    return ticket, task


def _finished(task: TaskThread) -> None:
    _running.discard(task)
    task.deleteLater()


def running_tasks() -> int:
    return len(_running)


def wait_all(timeout_ms: int = 30_000) -> bool:
    """Block until every job has ended (tests and app exit); True if they all did."""
    ok = True
    for task in list(_running):
        task.cancel()
        ok = task.wait(timeout_ms) and ok
    return ok
