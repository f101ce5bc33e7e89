"""A tool run (LR finder, benchmark, pre-flight check) on a worker thread, reported back by signals.

The tools train a model for seconds to minutes; on the GUI thread they would freeze the window. A
``ToolJob`` runs ``fn(progress, stop_event)`` in a QThread; its signals arrive on the GUI thread
(queued), ``cancel()`` sets the stop event the core functions poll between batches.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

ToolFn = Callable[[Callable[[int, int], None], threading.Event], Any]

# Running threads are kept here until they finish: a QThread destroyed while running aborts the
# process, which would happen if a dialog or test closed while its tool was still working.
_RUNNING: set["_Thread"] = set()


def cancel_all(timeout_ms: int = 30_000) -> bool:
    """Ask every running tool to stop and wait for them (app exit); True if all ended in time."""
    threads = list(_RUNNING)
    for thread in threads:
        thread.stop.set()
    return all(thread.wait(timeout_ms) for thread in threads)


class _Thread(QThread):
    progressed = Signal(int, int)
    succeeded = Signal(object)
    errored = Signal(str, str)  # (message, detail)
    cancelled = Signal()

    def __init__(self, fn: ToolFn, stop: threading.Event):
        super().__init__()
        self.fn, self.stop = fn, stop

    def run(self) -> None:
        from medseg_gui.core.tools.trial_run import ToolCancelled, ToolError

        try:
            result = self.fn(lambda done, total: self.progressed.emit(int(done), int(total)), self.stop)
        except ToolCancelled:
            self.cancelled.emit()
        except ToolError as exc:
            self.errored.emit(str(exc), "")
        except Exception as exc:  # noqa: BLE001 — shown to the user, never raised into Qt
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.errored.emit(f"{type(exc).__name__}: {exc}", detail)
        else:
            if self.stop.is_set():
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)


class ToolJob(QObject):
    """One run of a tool function; create, connect the signals, ``start()``; ``cancel()`` from the GUI."""

    progressed = Signal(int, int)
    succeeded = Signal(object)
    errored = Signal(str, str)
    cancelled = Signal()
    ended = Signal()  # after any of the three outcomes

    def __init__(self, fn: ToolFn, parent: QObject | None = None):
        super().__init__(parent)
        self.stop_event = threading.Event()
        self._thread = _Thread(fn, self.stop_event)
        self._thread.progressed.connect(self.progressed)
        self._thread.succeeded.connect(self.succeeded)
        self._thread.errored.connect(self.errored)
        self._thread.cancelled.connect(self.cancelled)
        self._thread.finished.connect(self.ended)

    def start(self) -> None:
        thread = self._thread
        _RUNNING.add(thread)
        thread.finished.connect(lambda: _RUNNING.discard(thread))
        thread.start()

    def cancel(self) -> None:
        self.stop_event.set()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self._thread.wait(timeout_ms)
