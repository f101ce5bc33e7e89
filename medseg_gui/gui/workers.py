"""Background workers: the hardware poller (a worker QObject living in its own QThread).

NVML calls are quick but can stall for hundreds of milliseconds on a busy or throttling card, and
the first call loads the driver library; doing them on the GUI thread would make the window stutter
once a second. The worker owns a QTimer in its thread and emits plain snapshots; the GUI thread only
receives them through queued signals.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from medseg_gui.core.hardware import HardwareSnapshot

ProbeFn = Callable[[], HardwareSnapshot]


def default_probe() -> HardwareSnapshot:
    from medseg_gui.core.hardware import probe

    return probe()


class HardwarePoller(QObject):
    """Calls ``probe_fn`` every ``interval_ms`` in the thread it lives in; never raises into Qt."""

    snapshot_ready = Signal(object)
    errored = Signal(str)

    def __init__(self, probe_fn: ProbeFn | None = None, interval_ms: int = 1000):
        super().__init__()
        self._probe = probe_fn or default_probe
        self._interval_ms = interval_ms
        self._timer: QTimer | None = None

    @Slot()
    def start(self) -> None:
        # Created here so the timer belongs to the worker's thread, not the GUI thread.
        self._timer = QTimer(self)
        self._timer.setInterval(self._interval_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()
        self.poll()

    @Slot()
    def poll(self) -> None:
        try:
            snapshot = self._probe()
        except Exception as exc:  # probe() never raises, but an injected one might
            self.errored.emit(f"hardware poll failed: {type(exc).__name__}: {exc}")
            return
        self.snapshot_ready.emit(snapshot)

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()


class PollerThread(QObject):
    """Owns the thread and the poller; lives on the GUI thread. ``stop()`` returns once it has ended."""

    snapshot_ready = Signal(object)
    errored = Signal(str)

    def __init__(self, probe_fn: ProbeFn | None = None, interval_ms: int = 1000,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("hardware-poller")
        self._worker = HardwarePoller(probe_fn, interval_ms)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.start)
        self._thread.finished.connect(self._worker.deleteLater)
        self._worker.snapshot_ready.connect(self.snapshot_ready)
        self._worker.errored.connect(self.errored)

    def start(self) -> None:
        if not self._thread.isRunning():
            self._thread.start(QThread.Priority.LowPriority)

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Quit the worker's event loop (the timer dies with it) and wait; True if it ended in time."""
        if not self._thread.isRunning():
            return True
        self._thread.quit()
        return self._thread.wait(timeout_ms)
