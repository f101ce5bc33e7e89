"""Training transports for the GUI: a worker that runs on a ``gui.workers.Task`` and feeds one event queue.

Two transports, one stream:

* one device: :class:`InProcessWorker` runs ``core.engine.session.TrainingSession`` in the task's
  thread with a sink that puts every event on a ``queue.Queue``;
* several GPUs: Lightning's DDP re-executes ``sys.argv`` (it would relaunch the GUI), so
  :class:`ChildProcessWorker` starts ``medseg train --config FILE --events-json`` (the command and the
  line parser live in ``core.engine.transport``) and turns its stdout into the same events.

The GUI thread never blocks on either: it drains the queue with a timer (``training.pump``). Whatever
goes wrong in the worker — an exception, a child that dies without a word — becomes a ``RunFailed``
event (``core.engine.failures``), so the window shows a dialog instead of crashing or freezing.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.failures import HINTS, check_dataset, classify_failure
from medseg_gui.core.engine.transport import child_command, parse_child_line
from medseg_gui.core.events import (TERMINAL_EVENTS, Event, LogMessage, PhaseChanged, RunFailed, RunFinished,
                                    RunStarted)
from medseg_gui.gui.workers import Task

SessionFactory = Callable[..., Any]  # (config, sink, run_dir=, resume_from=, datamodule_factory=) -> session


class _QueueSink:
    """The session's sink: put events on the queue (thread-safe, never blocks the training thread)."""

    def __init__(self, events: queue.Queue):
        self.events = events

    def __call__(self, event: Event) -> None:
        self.events.put(event)


class TrainingWorker:
    """Base of both transports: ``run`` blocks the task's thread until the run ends.

    ``stop()`` is called from the GUI thread while ``run`` is busy in the task's thread; it only sets
    flags and signals, so it is thread-safe.
    """

    def __init__(self, config: cfg.RunConfig, events: queue.Queue, *, resume_from: str | None = None,
                 run_dir: str | None = None, check_data: bool = True):
        self.config = config.copy()
        self.events = events
        self.resume_from = resume_from
        self.run_dir = run_dir
        self.check_data = check_data
        self._stop = threading.Event()
        self.result: RunFinished | RunFailed | None = None

    def put(self, event: Event) -> None:
        self.events.put(event)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> RunFinished | RunFailed:
        try:
            result = self._run()
        except BaseException as exc:  # noqa: BLE001 — the contract: a terminal event, never a raise into Qt
            result = classify_failure(exc, self.run_dir or "")
            self.put(result)
        self.result = result
        return result

    def _preflight(self) -> tuple[Any, RunFailed | RunFinished | None]:
        """The dataset check, then the stop flag; a terminal event (already queued) ends the run early."""
        report, failure = None, None
        if self.check_data:
            self.put(PhaseChanged(phase="checking_data", message=f"checking dataset {self.config.dataset.path}"))
            report, failure = check_dataset(self.config)
            if failure is None and report is not None and report.problems:
                self.put(LogMessage(level="warning", message=report.verdict))
        if failure is None and self._stop.is_set():
            failure = RunFinished(run_dir="", stopped_early=True)
        if failure is not None:
            self.put(failure)
        return report, failure

    def _run(self) -> RunFinished | RunFailed:  # pragma: no cover - overridden
        raise NotImplementedError


class InProcessWorker(TrainingWorker):
    """One device: the core session in this thread, its events on the queue."""

    def __init__(self, config: cfg.RunConfig, events: queue.Queue, *, resume_from: str | None = None,
                 run_dir: str | None = None, check_data: bool = True,
                 session_factory: SessionFactory | None = None, session_kwargs: dict[str, Any] | None = None,
                 torch_threads: int | None = None):
        super().__init__(config, events, resume_from=resume_from, run_dir=run_dir, check_data=check_data)
        self.session_factory = session_factory
        self.session_kwargs = dict(session_kwargs or {})
        self.torch_threads = torch_threads
        self._session: Any = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        super().stop()
        with self._lock:
            if self._session is not None:
                self._session.stop()

    def _run(self) -> RunFinished | RunFailed:
        report, ended = self._preflight()
        if ended is not None:
            return ended
        factory = self.session_factory
        if factory is None:
            from medseg_gui.core.engine.session import TrainingSession

            factory = TrainingSession
        kwargs = dict(self.session_kwargs)
        if report is not None and "datamodule_factory" not in kwargs:
            def datamodule_factory(config: cfg.RunConfig, report: Any = report) -> Any:
                from medseg_gui.core.data.datamodule import build_datamodule

                return build_datamodule(config, report)

            kwargs["datamodule_factory"] = datamodule_factory
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        session = factory(self.config, _QueueSink(self.events), run_dir=self.run_dir, resume_from=self.resume_from,
                          **kwargs)
        with self._lock:
            self._session = session
            if self._stop.is_set():
                session.stop()
        return session.run()  # emits its own terminal event into the sink


class ChildProcessWorker(TrainingWorker):
    """Several GPUs: supervise ``medseg train --events-json`` and parse its stdout into events.

    Stop asks nicely first — a line ``stop`` on the child's stdin (``--stop-on-stdin``), or, if that
    pipe is gone, SIGINT on POSIX / CTRL_BREAK on Windows; the CLI turns each into a cooperative stop
    with a checkpoint (only one of them: a second interrupt would abort) — then terminates after
    ``stop_timeout_s`` and kills after ``kill_timeout_s`` more. A child that ends without a terminal event becomes a RunFailed carrying
    the tail of its stderr.
    """

    def __init__(self, config: cfg.RunConfig, events: queue.Queue, *, resume_from: str | None = None,
                 run_dir: str | None = None, check_data: bool = True, command: list[str] | None = None,
                 stop_timeout_s: float = 60.0, kill_timeout_s: float = 10.0, env: dict[str, str] | None = None):
        super().__init__(config, events, resume_from=resume_from, run_dir=run_dir, check_data=check_data)
        self.command = command
        self.stop_timeout_s = stop_timeout_s
        self.kill_timeout_s = kill_timeout_s
        self.extra_env = dict(env or {})
        self._proc: subprocess.Popen | None = None
        self._stop_sent = False
        self._lock = threading.Lock()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.returncode: int | None = None

    def stop(self) -> None:
        super().stop()
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or self._stop_sent:
                return
            self._stop_sent = True
        try:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        except (OSError, ValueError, AssertionError):
            try:
                proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)  # type: ignore[attr-defined]
            except (OSError, ValueError):
                pass
        threading.Thread(target=self._escalate, args=(proc,), name="medseg-child-stop", daemon=True).start()

    def _escalate(self, proc: subprocess.Popen) -> None:
        """terminate() if the child ignores the polite stop, kill() if it ignores that too."""
        try:
            proc.wait(self.stop_timeout_s)
            return
        except subprocess.TimeoutExpired:
            pass
        self.put(LogMessage(level="warning", message=f"the training process did not stop within "
                                                     f"{self.stop_timeout_s:.0f} s; terminating it"))
        proc.terminate()
        try:
            proc.wait(self.kill_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()

    def _run(self) -> RunFinished | RunFailed:
        _, ended = self._preflight()
        if ended is not None:
            return ended
        with tempfile.TemporaryDirectory(prefix="medseg-train-") as tmp:
            config_path = cfg.save(self.config, Path(tmp) / "config.toml")
            command = self.command or child_command(config_path, self.resume_from, self.run_dir)
            return self._supervise(command)

    def _supervise(self, command: list[str]) -> RunFinished | RunFailed:
        env = dict(os.environ, PYTHONUNBUFFERED="1", NO_ALBUMENTATIONS_UPDATE="1", **self.extra_env)
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # the terminal's Ctrl+C goes to the GUI, not the child
        self.put(PhaseChanged(phase="starting", message="starting the training process: " + " ".join(command[1:])))
        try:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                                    text=True, encoding="utf-8", errors="replace", bufsize=1, env=env, **kwargs)
        except OSError as exc:
            failure = RunFailed(run_dir="", reason=f"cannot start the training process: {exc}", kind="error",
                                hint="check that medseg is installed in this Python environment",
                                detail=" ".join(command))
            self.put(failure)
            return failure
        with self._lock:
            self._proc = proc
        if self._stop.is_set():
            self.stop()
        err_reader = threading.Thread(target=self._read_stderr, args=(proc,), name="medseg-child-stderr",
                                      daemon=True)
        err_reader.start()
        terminal: RunFinished | RunFailed | None = None
        run_dir = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            event = parse_child_line(line)
            if event is None:
                continue
            if isinstance(event, RunStarted):
                run_dir = event.run_dir
            if isinstance(event, TERMINAL_EVENTS):
                terminal = event  # type: ignore[assignment]
            self.put(event)
        self.returncode = proc.wait()
        err_reader.join(timeout=2.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if terminal is not None:
            return terminal
        tail = "".join(self.stderr_tail).strip()
        if self._stop.is_set():
            result: RunFinished | RunFailed = RunFinished(run_dir=run_dir, stopped_early=True)
            self.put(LogMessage(level="warning", message=f"the training process ended (exit code "
                                                         f"{self.returncode}) without a final report"))
        else:
            last = tail.splitlines()[-1] if tail else ""
            result = RunFailed(run_dir=run_dir, kind="error", detail=tail,
                               reason=f"the training process exited with code {self.returncode} without "
                                      f"finishing" + (f": {last}" if last else ""),
                               hint="see the details; run the same medseg train command in a terminal to "
                                    "see its full output")
        self.put(result)
        return result

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.stderr_tail.append(line)


class TrainingRunner(QObject):
    """Owns the training task on the GUI side: start, stop, wait, and the one event pump.

    The worker puts events on ``events`` from its thread; the pump (a GUI-thread timer) hands them on
    as one batch per ``drain_interval_ms`` on ``events_arrived`` — every tick, empty batches included, so
    views can count the ETA down while validation sends nothing — and the plots redraw at most that
    often however fast events arrive. ``ended`` follows the last batch with the terminal event once the
    task's thread has finished. ``in_process_factory``/``child_factory`` build the workers (tests
    inject fakes and tiny models).
    """

    events_arrived = Signal(list)
    ended = Signal(object)

    def __init__(self, parent: QObject | None = None, *,
                 in_process_factory: Callable[..., TrainingWorker] | None = None,
                 child_factory: Callable[..., TrainingWorker] | None = None, drain_interval_ms: int = 100):
        super().__init__(parent)
        self._pump = QTimer(self)
        self._pump.setInterval(drain_interval_ms)
        self._pump.timeout.connect(self.pump)
        self.events: queue.Queue[Event] = queue.Queue()
        self.in_process_factory = in_process_factory or InProcessWorker
        self.child_factory = child_factory or ChildProcessWorker
        self._task: Task | None = None
        self._worker: TrainingWorker | None = None
        self.started_at: float | None = None
        self.stop_requested_at: float | None = None

    @staticmethod
    def uses_child_process(config: cfg.RunConfig) -> bool:
        """Several GPUs (training.gpus when set, else training.devices) train in a child process; its
        config file carries training.gpus, so the child trains on exactly the GPUs ticked here."""
        from medseg_gui.core.gpu_identity import device_count

        return device_count(config.training.gpus, config.training.devices) > 1

    def is_running(self) -> bool:
        return self._task is not None

    @property
    def worker(self) -> TrainingWorker | None:
        return self._worker

    def start(self, config: cfg.RunConfig, *, resume_from: str | None = None, run_dir: str | None = None) -> None:
        if self.is_running():
            raise RuntimeError("a training run is already going; stop it first")
        factory = self.child_factory if self.uses_child_process(config) else self.in_process_factory
        worker = factory(config, self.events, resume_from=resume_from, run_dir=run_dir)
        # The worker's own stop reaches the session (or the child's stdin) while run() is inside fit.
        task = Task(lambda _progress, _stop: worker.run(), "medseg-training", self, on_cancel=worker.stop)
        task.ended.connect(lambda t=task: self._on_task_ended(t))
        self._task, self._worker = task, worker
        self.started_at, self.stop_requested_at = time.monotonic(), None
        task.start()
        self._pump.start()

    def stop(self) -> None:
        """Cooperative stop; returns at once (the session saves a checkpoint and ends after this batch)."""
        if self._task is not None:
            self.stop_requested_at = self.stop_requested_at or time.monotonic()
            self._task.cancel()

    def wait(self, timeout_ms: int) -> bool:
        """Block until the training thread has ended (used when the window closes); True if it did."""
        if self._task is None:
            return True
        task = self._task
        ok = task.wait(timeout_ms)
        if ok:
            self._on_task_ended(task)
        return ok

    def pump(self) -> int:
        """Hand the queued events on as one batch (``events_arrived``); the number of events."""
        events = self.drain()
        self.events_arrived.emit(events)
        return len(events)

    def drain(self, limit: int = 20_000) -> list[Event]:
        out: list[Event] = []
        try:
            while len(out) < limit:
                out.append(self.events.get_nowait())
        except queue.Empty:
            pass
        return out

    def _on_task_ended(self, task: Task) -> None:
        if task is not self._task or self._worker is None:
            return  # already handled by wait()
        worker = self._worker
        self._task = self._worker = None
        result = worker.result or RunFailed(run_dir="", reason="the training thread ended without a result",
                                            hint=HINTS["error"])
        self._pump.stop()
        self.pump()  # the last events, the terminal one included, before ``ended``
        self.ended.emit(result)
