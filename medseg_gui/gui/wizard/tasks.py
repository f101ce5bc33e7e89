"""Tickets for the wizard's background jobs (dataset check, import), run as ``gui.workers.Task``.

A job may still be running when the user presses Back or Cancel (a dataset check cannot be
interrupted half-way). The task's handle is parented to the page, so a page deleted with its wizard
gets no late callback (``gui.workers`` keeps the thread itself alive until it ends). Each job carries
a ticket: a page ignores results whose ticket is not its latest, so a stale check never overwrites a
new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from medseg_gui.gui.workers import Task, TaskFn

_tickets = itertools.count(1)


def start_task(owner: QObject, fn: TaskFn, on_done: Callable[[int, Any], None],
               on_failed: Callable[[int, str], None], name: str = "wizard-task",
               on_progress: Callable[[int, int], None] | None = None) -> tuple[int, Task]:
    """Run ``fn(progress, stop)`` in a thread; callbacks get ``(ticket, result | message)``."""
    ticket = next(_tickets)
    task = Task(fn, name=name, parent=owner)
    task.succeeded.connect(lambda result: on_done(ticket, result))
    task.failed.connect(lambda message, _detail: on_failed(ticket, message))
    if on_progress is not None:
        task.progressed.connect(on_progress)
    task.start()
    return ticket, task
