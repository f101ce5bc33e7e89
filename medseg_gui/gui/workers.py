"""The GUI's one background-task primitive: ``Task`` (a function on a thread, reported by signals).

Everything slow runs here: model loading and inference, the tools (LR finder, benchmark, pre-flight),
the wizard's dataset check and import, the weight download, the hardware poller and training itself.
On the GUI thread any of them would freeze the window.

The contract, the same for every task:

* the function is called as ``fn(progress, stop)`` in a worker thread: ``progress(done, total)``
  reports progress, ``stop`` is a ``threading.Event`` set by ``cancel()`` that the function polls
  between units of work; ``task.report(obj)`` sends any other value (a hardware snapshot);
* the outcome arrives on the GUI thread as exactly one of ``succeeded(result)``,
  ``failed(message, detail)`` or ``cancelled()``, then ``ended()``. Nothing is raised into Qt;
* ``on_cancel`` lets a task whose function blocks for hours (training inside ``trainer.fit``, a child
  process) pass the stop on to the thing that can act on it;
* one keep-alive rule: a running thread is held by this module until it has ended (a QThread
  destroyed while running aborts the process), and the ``Task`` handle lives with its Qt parent: when
  the owner (a dialog, a wizard page) is deleted, its handle goes and the late outcome is dropped.
  Nobody calls ``deleteLater`` on a handle (deleting it beside a parent that is being collected
  crashed PySide); once ended, a handle holds no thread, so the few left under an owner cost little.

Why not superqt's ``thread_worker`` / ``create_worker`` (napari's, BSD-3): its stop (``quit()``) only
sets a flag that generator workers read between ``yield``\\ s, but training blocks inside
``trainer.fit`` for hours and must pass the stop to the session or to the child process's stdin; its
function workers have no progress channel; it runs on the shared ``QThreadPool``, where a run of
hours would hold a pool thread; and it would add ``qtpy`` and ``pygments`` to the bundle to replace
the hundred lines below.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from medseg_gui.core.hardware import HardwareSnapshot

TaskFn = Callable[[Callable[[int, int], None], threading.Event], Any]
ProbeFn = Callable[[], HardwareSnapshot]

# Threads still running, kept until they end (see the keep-alive rule above).
_RUNNING: set["_TaskThread"] = set()


def _stopper(stop: threading.Event, on_cancel: Callable[[], None] | None) -> Callable[[], None]:
    """Set the stop event and pass the stop on (thread-safe; returns at once)."""
    def request_stop() -> None:
        stop.set()
        if on_cancel is not None:
            on_cancel()

    return request_stop


class _TaskThread(QThread):
    """The thread itself: parent-less, so it survives its owner; emits from the worker thread."""

    progressed = Signal(int, int)
    reported = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, fn: TaskFn, stop: threading.Event, name: str, on_cancel: Callable[[], None] | None):
        super().__init__()
        self.setObjectName(name)
        self.fn, self.stop = fn, stop
        self.request_stop = _stopper(stop, on_cancel)

    def run(self) -> None:  # runs in the worker thread
        from medseg_gui.core.tools.trial_run import ToolCancelled, ToolError

        try:
            result = self.fn(lambda done, total: self.progressed.emit(int(done), int(total)), self.stop)
        except ToolCancelled:
            self.cancelled.emit()
        except ToolError as exc:  # already worded for the user
            self.failed.emit(str(exc), "")
        except Exception as exc:  # noqa: BLE001 — every failure becomes a message for the user
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.failed.emit(str(exc) or type(exc).__name__, detail)
        else:
            if self.stop.is_set() and result is None:
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)


class Task(QObject):
    """One run of ``fn(progress, stop)``: create, connect the signals, ``start()``; ``cancel()`` to stop."""

    progressed = Signal(int, int)
    reported = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str, str)  # (message for the user, detail for the log)
    cancelled = Signal()
    ended = Signal()  # after any of the three outcomes, once the thread has finished

    def __init__(self, fn: TaskFn, name: str = "task", parent: QObject | None = None, *,
                 on_cancel: Callable[[], None] | None = None, low_priority: bool = False):
        super().__init__(parent)
        self.stop_event = threading.Event()
        self._priority = QThread.Priority.LowPriority if low_priority else QThread.Priority.InheritPriority
        self._thread: _TaskThread | None = _TaskThread(fn, self.stop_event, name, on_cancel)
        self._request_stop = self._thread.request_stop  # a closure: it holds no reference to the thread
        for signal in ("progressed", "reported", "succeeded", "failed", "cancelled"):
            getattr(self._thread, signal).connect(getattr(self, signal))
        self._thread.finished.connect(self._thread_finished)

    def start(self) -> None:
        thread = self._thread
        if thread is None or thread.isRunning():
            raise RuntimeError("a task runs once; create a new Task to run it again")
        _RUNNING.add(thread)
        thread.finished.connect(lambda: _finished(thread))
        thread.start(self._priority)

    def report(self, value: Any) -> None:
        """Send ``value`` to ``reported`` on the GUI thread (call from the task's function)."""
        thread = self._thread
        if thread is not None:
            thread.reported.emit(value)

    def _thread_finished(self) -> None:
        self._thread = None  # the module releases the thread itself; the handle keeps no QThread
        self.ended.emit()

    def cancel(self) -> None:
        """Ask the function to stop (thread-safe; returns at once)."""
        self._request_stop()

    @property
    def cancel_requested(self) -> bool:
        return self.stop_event.is_set()

    def is_running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.isRunning()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the thread has ended; True if it did in time."""
        thread = self._thread
        return thread is None or thread.wait(timeout_ms)


def _finished(thread: _TaskThread) -> None:
    thread.wait()  # ``finished`` comes just before the thread's very end; let it end before releasing it
    # Released on the next turn of the event loop, not here: this runs inside the thread's own
    # ``finished`` signal, and dropping the last reference would delete the QThread mid-emission.
    QTimer.singleShot(0, lambda: _RUNNING.discard(thread))


def running_tasks() -> int:
    return len(_RUNNING)


def cancel_all(timeout_ms: int = 30_000) -> bool:
    """Ask every running task to stop and wait for them (app exit, tests); True if all ended in time."""
    threads = list(_RUNNING)
    for thread in threads:
        thread.request_stop()
    return all(thread.wait(timeout_ms) for thread in threads)


def default_probe() -> HardwareSnapshot:
    from medseg_gui.core.hardware import probe

    return probe()


def hardware_poller(probe_fn: ProbeFn | None = None, interval_ms: int = 1000,
                    parent: QObject | None = None) -> Task:
    """A task that calls ``probe_fn`` every ``interval_ms`` until cancelled.

    NVML calls are quick but can stall for hundreds of milliseconds on a busy or throttling card, and
    the first call loads the driver library. Snapshots arrive on ``reported``; a failing probe reports
    its message as a ``str`` (the next poll tries again).
    """
    probe = probe_fn or default_probe
    task: Task

    def poll(_progress: Callable[[int, int], None], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                task.report(probe())
            except Exception as exc:  # noqa: BLE001 — probe() never raises, but an injected one might
                task.report(f"hardware poll failed: {type(exc).__name__}: {exc}")
            stop.wait(interval_ms / 1000)

    task = Task(poll, name="hardware-poller", parent=parent, low_priority=True)
    return task
