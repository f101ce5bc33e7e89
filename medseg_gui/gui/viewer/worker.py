"""A one-shot background task (model loading, inference) with progress, cooperative cancel and errors.

Why a thread: loading torch + a model takes seconds and a volume's inference longer; on the GUI
thread the window would freeze. The task function receives ``progress(done, total)`` and
``should_stop()``; results and errors come back through queued signals, so widgets are only touched
on the GUI thread (the shape of superqt's ``create_worker``, kept to what the viewer needs).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

TaskFn = Callable[[Callable[[int, int], None], Callable[[], bool]], Any]


class TaskThread(QThread):
    progressed = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, str)  # (message for the user, traceback for the log)

    def __init__(self, fn: TaskFn, name: str = "task", parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self._fn = fn
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:  # runs in the worker thread
        try:
            result = self._fn(lambda done, total: self.progressed.emit(int(done), int(total)), self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 — every failure becomes a message for the user
            self.failed.emit(str(exc) or type(exc).__name__, traceback.format_exc())
            return
        self.succeeded.emit(result)
