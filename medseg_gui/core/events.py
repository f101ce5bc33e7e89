"""The event protocol between a training run and any front end (GUI, CLI, a re-opened run folder).

Events are small dataclasses with a JSON-lines codec: the same stream is printed by
``medseg train --events-json``, read back by the GUI's child-process transport, and stored in every
run's ``events.jsonl`` so a past run can be re-plotted.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


def _now() -> float:
    return time.time()


@dataclass
class Event:
    time: float = field(default_factory=_now, kw_only=True)


@dataclass
class RunStarted(Event):
    run_dir: str
    config: dict[str, Any]
    device: str  # e.g. "NVIDIA H100 80GB HBM3" or "cpu"
    epochs: int
    steps_per_epoch: int
    train_images: int = 0
    val_images: int = 0
    resumed_from_step: int = 0
    predicted_peak_gb: float | None = None
    vram_total_gb: float | None = None


@dataclass
class PhaseChanged(Event):
    """A visible phase: 'loading_model', 'compiling', 'training', 'validating', 'exporting'."""
    phase: str
    message: str = ""


@dataclass
class StepMetrics(Event):
    step: int  # global optimiser-independent batch index, continues across resume
    epoch: int
    loss: float
    lr: float
    images_per_s: float | None = None
    eta_s: float | None = None
    epoch_progress: float = 0.0  # 0..1 within the epoch


@dataclass
class EpochMetrics(Event):
    epoch: int
    step: int
    train_loss: float | None
    val_loss: float | None
    val_f1: float | None  # the headline: mean Dice over the foreground classes (core.headline.HEADLINE_METRIC)
    per_class_dice: list[float] = field(default_factory=list)
    per_class_iou: list[float] = field(default_factory=list)
    lr: float | None = None
    epoch_time_s: float | None = None


@dataclass
class VramSample(Event):
    step: int
    allocated_gb: float | None  # this process's tensors (torch allocator)
    reserved_gb: float | None  # this process's allocator pool
    device_used_gb: float | None  # the whole card as nvidia-smi shows it (NVML)
    device_total_gb: float | None


@dataclass
class Checkpointed(Event):
    path: str
    epoch: int
    step: int
    is_best: bool = False
    metric: float | None = None


@dataclass
class OomRecovered(Event):
    step: int
    old_batch_size: int
    new_batch_size: int
    accumulate_grad_batches: int
    message: str = ""


@dataclass
class LogMessage(Event):
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass
class RunFinished(Event):
    run_dir: str
    stopped_early: bool  # True when the user pressed Stop
    best_f1: float | None = None
    best_checkpoint: str | None = None
    bundle_dir: str | None = None
    epochs_done: int = 0
    steps_done: int = 0
    duration_s: float = 0.0


@dataclass
class RunFailed(Event):
    run_dir: str
    reason: str  # one line a user understands
    hint: str = ""  # what to do about it
    detail: str = ""  # traceback or raw error, for the log pane
    kind: str = "error"  # a key of FAILURE_TITLES


# The heading a failure is shown under, by kind: one table for the GUI's dialog and the CLI's error line,
# so a full disk or a busy run folder reads the same everywhere instead of a generic "Training failed".
FAILURE_TITLES: dict[str, str] = {
    "oom": "Out of GPU memory",
    "data": "Dataset problem",
    "config": "Configuration problem",
    "disk": "Disk full",
    "run_busy": "Run folder in use",  # another training holds the run folder's lock
    "run_dir": "Run folder refused",  # an existing run, a foreign or unwritable folder
    "error": "Training failed",
}
# Kinds where the command asked for a folder it may not use (the CLI exits 2 for these, 1 otherwise).
RUN_FOLDER_KINDS = frozenset({"run_dir", "run_busy"})


def failure_title(kind: str) -> str:
    """The heading for a RunFailed of ``kind``; an unknown kind (an older events file) gets the generic one."""
    return FAILURE_TITLES.get(kind, FAILURE_TITLES["error"])


def failure_line(failure: RunFailed) -> str:
    """The failure as one line headed by its title, for the command line (the GUI shows the title as
    the dialog's heading); a reason that already starts with the title's words is not repeated."""
    title = failure_title(failure.kind)
    if failure.reason.lower().startswith(title.lower()):
        return failure.reason
    return f"{title}: {failure.reason}"


EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in (
    RunStarted, PhaseChanged, StepMetrics, EpochMetrics, VramSample, Checkpointed, OomRecovered,
    LogMessage, RunFinished, RunFailed)}

TERMINAL_EVENTS = (RunFinished, RunFailed)

Sink = Callable[[Event], None]


def to_dict(event: Event) -> dict[str, Any]:
    data = dataclasses.asdict(event)
    data["type"] = type(event).__name__
    return data


def to_json(event: Event) -> str:
    """One line (JSON escapes newlines); NaN/inf become null so every reader can parse it."""
    return json.dumps(_sanitize(to_dict(event)), separators=(",", ":"), default=str, allow_nan=False)


def _sanitize(value: Any) -> Any:
    """NaN/inf (a diverging loss) become null so every reader can parse the line."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    return value


class EventDecodeError(ValueError):
    pass


def from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    name = data.pop("type", None)
    cls = EVENT_TYPES.get(name)  # type: ignore[arg-type]
    if cls is None:
        raise EventDecodeError(f"unknown event type {name!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise EventDecodeError(f"{name}: {exc}") from None


def from_json(line: str) -> Event:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventDecodeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventDecodeError("not a JSON object")
    return from_dict(data)


def read_jsonl(path: str | Path) -> list[Event]:
    """All readable events of a run's events.jsonl; a truncated last line (crash mid-write, perhaps in
    the middle of a UTF-8 character) is skipped."""
    return list(iter_jsonl(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()))


def open_jsonl_append(path: str | Path) -> TextIO:
    """Open an events file for appending, first ending a partial last line (a crash mid-write) with a
    newline: the next event then starts a line of its own instead of being glued onto the broken
    one, and readers skip only the broken line."""
    path = Path(path)
    with open(path, "ab+") as fh:
        if fh.tell() > 0:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
                fh.flush()
    return open(path, "a", encoding="utf-8")


def iter_jsonl(lines: Iterable[str]) -> Iterator[Event]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield from_json(line)
        except EventDecodeError:
            continue


class JsonlWriter:
    """A sink appending one line per event and flushing, so a crash loses at most one event.

    After a failed write (a full disk) the next line starts with a newline, so a partly written line
    stays alone; the OSError names the file."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._broken = False

    def __call__(self, event: Event) -> None:
        line = ("\n" if self._broken else "") + to_json(event) + "\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except OSError as exc:
            self._broken = True
            if exc.filename is None and isinstance(getattr(self.stream, "name", None), str):
                exc.filename = self.stream.name
            raise
        self._broken = False


def fan_out(*sinks: Sink) -> Sink:
    """One sink that forwards to several (run-folder file + GUI queue, say)."""
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)
    return emit
