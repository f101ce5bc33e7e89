"""The state of one training run as plots need it, built from the event stream (no Qt).

The GUI feeds live events into :class:`LiveMetrics` from its queue-draining timer; re-opening a past
run feeds the events of its ``events.jsonl`` through the same code (:func:`replay_run`), so a live run
and a re-opened one look the same.

Memory stays bounded on long runs: a per-step series keeps the most recent points at full resolution
in a ring (:class:`DecimatedSeries`) and folds older points into min/max buckets, merging neighbour
buckets whenever there are too many. The plotted line keeps every spike (min and max of each bucket
survive) at a few thousand points however long the run is, so ``setData`` stays cheap after
100 000+ steps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.events import (Checkpointed, EpochMetrics, Event, LogMessage, OomRecovered, PhaseChanged,
                                    RunFailed, RunFinished, RunStarted, StepMetrics, VramSample, read_jsonl)
from medseg_gui.core.headline import HEADLINE_METRIC
from medseg_gui.core.runs import EVENTS_FILE
from medseg_gui.core.words import plural


class DecimatedSeries:
    """An (x, y) series with a full-resolution ring of the last ``recent`` points and a min/max history.

    When the ring is full, its oldest ``chunk`` points become one bucket holding the point with the
    lowest and the point with the highest y (in x order). When there are more than ``max_buckets``
    buckets, neighbours are merged pairwise, halving the history's resolution. Memory is therefore
    O(recent + 2 * max_buckets) whatever the number of points appended.
    """

    def __init__(self, recent: int = 4096, chunk: int = 32, max_buckets: int = 2048):
        if recent < chunk or chunk < 2 or max_buckets < 2:
            raise ValueError("need recent >= chunk >= 2 and max_buckets >= 2")
        self.recent = recent
        self.chunk = chunk
        self.max_buckets = max_buckets
        self._rx = np.empty(recent, dtype=np.float64)
        self._ry = np.empty(recent, dtype=np.float64)
        self._start = 0  # index of the oldest point in the ring
        self._len = 0
        # history buckets: x and y of the min point and of the max point
        self._hx = np.empty((0, 2), dtype=np.float64)
        self._hy = np.empty((0, 2), dtype=np.float64)
        self.count = 0  # points ever appended (minus truncated ones still in the ring)

    def __len__(self) -> int:
        return self._len + 2 * len(self._hx)

    @property
    def last(self) -> tuple[float, float] | None:
        if self._len:
            i = (self._start + self._len - 1) % self.recent
            return float(self._rx[i]), float(self._ry[i])
        if len(self._hx):
            return float(self._hx[-1, 1]), float(self._hy[-1, 1])
        return None

    def append(self, x: float, y: float) -> None:
        if self._len == self.recent:
            self._fold_oldest()
        i = (self._start + self._len) % self.recent
        self._rx[i] = x
        self._ry[i] = y
        self._len += 1
        self.count += 1

    def _ring(self) -> tuple[np.ndarray, np.ndarray]:
        idx = (self._start + np.arange(self._len)) % self.recent
        return self._rx[idx], self._ry[idx]

    def _fold_oldest(self) -> None:
        idx = (self._start + np.arange(self.chunk)) % self.recent
        x, y = self._rx[idx], self._ry[idx]
        self._start = (self._start + self.chunk) % self.recent
        self._len -= self.chunk
        self._push_bucket(x, y)

    def _push_bucket(self, x: np.ndarray, y: np.ndarray) -> None:
        finite = np.isfinite(y)
        if not finite.any():  # a stretch of NaN losses: keep its position, plotted as a gap
            bx, by = np.array([[x[0], x[-1]]]), np.array([[np.nan, np.nan]])
        else:
            yy = np.where(finite, y, np.nan)
            lo, hi = int(np.nanargmin(yy)), int(np.nanargmax(yy))
            a, b = sorted((lo, hi))
            bx, by = np.array([[x[a], x[b]]]), np.array([[y[a], y[b]]])
        self._hx = np.concatenate([self._hx, bx])
        self._hy = np.concatenate([self._hy, by])
        if len(self._hx) > self.max_buckets:
            self._merge_history()

    def _merge_history(self) -> None:
        """Merge neighbour buckets pairwise: each new bucket keeps the min and the max of the two."""
        n = len(self._hx) // 2 * 2
        hx, hy = self._hx[:n].reshape(-1, 4), self._hy[:n].reshape(-1, 4)
        with np.errstate(invalid="ignore"):
            filled = np.where(np.isnan(hy), np.inf, hy)
            lo = np.argmin(filled, axis=1)
            filled = np.where(np.isnan(hy), -np.inf, hy)
            hi = np.argmax(filled, axis=1)
        rows = np.arange(len(hx))
        a, b = np.minimum(lo, hi), np.maximum(lo, hi)
        new_x = np.stack([hx[rows, a], hx[rows, b]], axis=1)
        new_y = np.stack([hy[rows, a], hy[rows, b]], axis=1)
        all_nan = np.isnan(hy).all(axis=1)
        new_x[all_nan] = np.stack([hx[all_nan, 0], hx[all_nan, 3]], axis=1)
        self._hx = np.concatenate([new_x, self._hx[n:]])
        self._hy = np.concatenate([new_y, self._hy[n:]])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y in x order: the decimated history followed by the full-resolution ring."""
        rx, ry = self._ring()
        return np.concatenate([self._hx.ravel(), rx]), np.concatenate([self._hy.ravel(), ry])

    def truncate_after(self, x: float) -> None:
        """Drop points with x greater than ``x`` (a resume or OOM restart redoes those steps)."""
        rx, ry = self._ring()
        keep = rx <= x
        if not keep.all():
            self._rx[:keep.sum()] = rx[keep]
            self._ry[:keep.sum()] = ry[keep]
            self.count -= int((~keep).sum())
            self._start, self._len = 0, int(keep.sum())
        if len(self._hx):
            rows = self._hx[:, 0] <= x
            self._hx, self._hy = self._hx[rows], self._hy[rows]

    def clear(self) -> None:
        self._start = self._len = self.count = 0
        self._hx = np.empty((0, 2))
        self._hy = np.empty((0, 2))


class Ema:
    """Bias-corrected exponential moving average (as TensorBoard smooths): early values are not pulled
    towards zero, and NaN/inf losses are skipped instead of poisoning every later value."""

    def __init__(self, weight: float = 0.9):
        if not 0.0 <= weight < 1.0:
            raise ValueError("EMA weight must be in [0, 1)")
        self.weight = weight
        self._acc = 0.0
        self._n = 0

    def update(self, value: float) -> float:
        if value is None or not math.isfinite(value):
            return self.value
        self._acc = self.weight * self._acc + (1.0 - self.weight) * value
        self._n += 1
        return self.value

    @property
    def value(self) -> float:
        if self._n == 0:
            return math.nan
        return self._acc / (1.0 - self.weight ** self._n)

    def reset(self) -> None:
        self._acc, self._n = 0.0, 0


@dataclass
class LogEntry:
    time: float
    level: str  # "info" | "warning" | "error"
    text: str


@dataclass
class EpochTable:
    """Per-epoch values, one list entry per reported epoch (None where a value was missing)."""
    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_f1: list[float] = field(default_factory=list)
    dice: list[list[float]] = field(default_factory=list)  # [epoch][class]

    def add(self, ev: EpochMetrics) -> None:
        # a resumed run redoes epochs after its checkpoint: the newer row replaces the old one
        while self.epoch and self.epoch[-1] >= ev.epoch:
            self._pop()
        self.epoch.append(ev.epoch)
        self.step.append(ev.step)
        self.train_loss.append(_num(ev.train_loss))
        self.val_loss.append(_num(ev.val_loss))
        self.val_f1.append(_num(ev.val_f1))
        self.dice.append([_num(v) for v in ev.per_class_dice])

    def _pop(self) -> None:
        for name in ("epoch", "step", "train_loss", "val_loss", "val_f1", "dice"):
            getattr(self, name).pop()

    def truncate_after_step(self, step: int) -> None:
        while self.step and self.step[-1] > step:
            self._pop()

    def dice_matrix(self, num_classes: int) -> np.ndarray:
        """[epochs, classes] with NaN where an epoch did not report a class."""
        out = np.full((len(self.dice), num_classes), np.nan)
        for i, row in enumerate(self.dice):
            n = min(len(row), num_classes)
            out[i, :n] = row[:n]
        return out


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


#: Until a first epoch boundary has been timed, validation is guessed at this share of training's
#: time per image (a forward pass without backward and optimiser step, plus the metric counts).
VAL_COST_PRIOR = 0.5


class EtaEstimator:
    """Remaining time of a run from the event stream itself: step time x steps left, plus the cost of
    every epoch boundary still to come (validation, checkpoint, the loader's restart).

    Why not the engine's ``eta_s`` alone: it only knows the current epoch's mean batch time and the
    last validation, so it jumps at each epoch start and misses checkpoints and loader restarts. Here
    the step time is measured between step events of one epoch (never across a validation or a
    compile), and a boundary's cost is the wall time from an epoch's last step event to the next
    epoch's first one, minus the steps in between. Before the first boundary, validation is guessed
    from the image counts (:data:`VAL_COST_PRIOR`). Pure arithmetic on event times, so tests replay
    events with made-up times (no clock).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total_epochs = 0
        self.steps_per_epoch = 0
        self.train_images = 0
        self.val_images = 0
        self._intervals: deque[tuple[float, int]] = deque()  # (seconds, steps) of intra-epoch intervals
        self._window_s = 0.0
        self._window_steps = 0
        self._boundaries: list[float] = []  # measured boundary costs (s)
        self._last: StepMetrics | None = None
        self._clean = False  # no validation/compile/restart since the last step event
        self._boundary_start: StepMetrics | None = None  # last step event of the previous epoch
        self.estimate_s: float | None = None
        self.estimate_time: float | None = None  # event time the estimate was made at

    def started(self, ev: RunStarted) -> None:
        self.total_epochs, self.steps_per_epoch = ev.epochs, ev.steps_per_epoch
        self.train_images, self.val_images = ev.train_images, ev.val_images
        self._last, self._clean, self._boundary_start = None, False, None

    def interrupted(self) -> None:
        """Validation, compiling or an OOM restart: the next interval is not pure training."""
        self._clean = False

    @property
    def seconds_per_step(self) -> float | None:
        """Mean over about the last epoch's steps (at least 50): recent enough to follow a change of
        speed (another program starts on the GPU), long enough not to jump with one slow batch."""
        return self._window_s / self._window_steps if self._window_steps else None

    def _add_interval(self, seconds: float, steps: int) -> None:
        self._intervals.append((seconds, steps))
        self._window_s += seconds
        self._window_steps += steps
        window = max(50, self.steps_per_epoch)
        while len(self._intervals) > 1 and self._window_steps - self._intervals[0][1] >= window:
            old_s, old_n = self._intervals.popleft()
            self._window_s -= old_s
            self._window_steps -= old_n

    @property
    def boundaries_measured(self) -> int:
        """Epoch boundaries timed so far (0: validation is still the prior's guess)."""
        return len(self._boundaries)

    def boundary_cost(self) -> float | None:
        """Seconds per epoch boundary: measured (the latest ones weigh most), else the prior."""
        if self._boundaries:
            recent = self._boundaries[-3:]
            return sum(recent) / len(recent)
        per_step = self.seconds_per_step
        if per_step is None or not self.train_images:
            return None
        per_image = per_step * self.steps_per_epoch / max(1, self.train_images)
        return VAL_COST_PRIOR * per_image * self.val_images

    def step(self, ev: StepMetrics) -> None:
        last = self._last
        if last is not None and ev.step > last.step:
            if ev.epoch == last.epoch and self._clean:
                self._add_interval(max(0.0, ev.time - last.time), ev.step - last.step)
            elif ev.epoch > last.epoch and self._boundary_start is not None:
                per_step = self.seconds_per_step
                if per_step is not None:
                    steps_between = ev.step - self._boundary_start.step
                    cost = ev.time - self._boundary_start.time - steps_between * per_step
                    self._boundaries.append(max(0.0, cost))
        if last is None or ev.epoch != last.epoch:
            self._boundary_start = None
        self._last = ev
        self._clean = True
        self._update(ev)

    def epoch_ended(self, ev: EpochMetrics) -> None:
        if self._last is not None:
            self._boundary_start = self._last  # the boundary runs from the epoch's last step event
        self._clean = False

    def _update(self, ev: StepMetrics) -> None:
        per_step, boundary = self.seconds_per_step, self.boundary_cost()
        if per_step is None or not self.total_epochs or not self.steps_per_epoch:
            self.estimate_s = None
            return
        epochs_after = max(0, self.total_epochs - ev.epoch)
        steps_left = (epochs_after + max(0.0, 1.0 - ev.epoch_progress)) * self.steps_per_epoch
        self.estimate_s = steps_left * per_step + (epochs_after + 1) * (boundary or 0.0)
        self.estimate_time = ev.time

    def remaining_at(self, now: float) -> float | None:
        """The estimate counted down to ``now`` (between events, e.g. during validation)."""
        if self.estimate_s is None or self.estimate_time is None:
            return None
        return max(0.0, self.estimate_s - max(0.0, now - self.estimate_time))


class LiveMetrics:
    """Everything the Training tab draws, accumulated from events; ``apply`` is the only writer.

    ``revision`` counts changes (so a throttled view redraws only when something new arrived);
    ``dirty`` names the parts that changed since the view last called :meth:`take_dirty`.
    """

    def __init__(self, *, ema_weight: float = 0.9, recent_points: int = 4096, max_buckets: int = 2048,
                 max_log: int = 2000):
        self._ema_weight = ema_weight
        self._recent = recent_points
        self._buckets = max_buckets
        self._max_log = max_log
        self.reset()

    def reset(self) -> None:
        series = lambda: DecimatedSeries(self._recent, 32, self._buckets)  # noqa: E731
        self.loss = series()
        self.loss_smooth = series()
        self.lr = series()
        self.vram_used = series()  # GB over seconds since the run started (card or process)
        self.vram_allocated = series()
        self._ema = Ema(self._ema_weight)
        self.epochs = EpochTable()
        self.log: deque[LogEntry] = deque(maxlen=self._max_log)
        self.log_count = 0  # entries ever added (the deque keeps the last max_log)
        self.run_dir: str | None = None
        self.config: dict[str, Any] = {}
        self.class_names: list[str] = []
        self.class_colors: list[str] = []
        self.device = ""
        self.total_epochs = 0
        self.steps_per_epoch = 0
        self.train_images = 0
        self.val_images = 0
        self.predicted_peak_gb: float | None = None
        self.vram_total_gb: float | None = None
        self.vram_label = "VRAM"
        self.t0: float | None = None
        self.phase = ""
        self.status = "idle"  # idle | running | finished | stopped | failed
        self.epoch = 0
        self.step = 0
        self.epoch_progress = 0.0
        self.images_per_s: float | None = None
        self.eta_s: float | None = None  # the remaining time at the last step event (ours, else the engine's)
        self.eta = EtaEstimator()
        self.best_f1: float | None = None
        self.best_checkpoint: str | None = None
        self.last_checkpoint: str | None = None
        self.bundle_dir: str | None = None
        self.finished: RunFinished | None = None
        self.failure: RunFailed | None = None
        self.events_seen = 0
        self.revision = 0
        self._dirty: set[str] = set()

    # ---- reading -------------------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        """The parts changed since the last call: 'steps', 'epochs', 'vram', 'progress', 'log', 'run'."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    @property
    def overall_progress(self) -> float:
        """0..1 over the whole run (epochs done plus the fraction of the current one)."""
        if self.status == "finished":
            return 1.0
        if not self.total_epochs:
            return 0.0
        done = max(0, self.epoch - 1) + self.epoch_progress
        return max(0.0, min(1.0, done / self.total_epochs))

    def remaining_s(self, now: float | None = None) -> float | None:
        """Time left for a running run at wall time ``now`` (default: now): the last estimate counted
        down since its step event, so the ETA keeps moving through validation."""
        if self.status != "running":
            return None
        if now is None:
            import time

            now = time.time()
        ours = self.eta.remaining_at(now)
        return ours if ours is not None else self.eta_s

    def log_since(self, count: int) -> list[LogEntry]:
        """Entries added after the first ``count`` (what a view that showed ``count`` entries lacks)."""
        new = min(len(self.log), max(0, self.log_count - count))
        return list(self.log)[len(self.log) - new:] if new else []

    @property
    def is_terminal(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    # ---- writing -------------------------------------------------------------------------------
    def apply_many(self, events: Iterable[Event]) -> int:
        n = 0
        for ev in events:
            self.apply(ev)
            n += 1
        return n

    def apply(self, ev: Event) -> None:
        handler = getattr(self, f"_on_{type(ev).__name__}", None)
        self.events_seen += 1
        if handler is not None:
            handler(ev)
            self.revision += 1

    def _mark(self, *parts: str) -> None:
        self._dirty.update(parts)

    def _on_RunStarted(self, ev: RunStarted) -> None:  # noqa: N802 (event names)
        if self.t0 is None:
            self.t0 = ev.time
        self.run_dir = ev.run_dir
        self.config = ev.config or {}
        ds = self.config.get("dataset", {})
        self.class_names = list(ds.get("class_names") or [])
        self.class_colors = list(ds.get("class_colors") or [])
        self.device = ev.device
        self.total_epochs = ev.epochs
        self.steps_per_epoch = ev.steps_per_epoch
        self.train_images, self.val_images = ev.train_images, ev.val_images
        if ev.predicted_peak_gb is not None:
            self.predicted_peak_gb = ev.predicted_peak_gb
        if ev.vram_total_gb is not None:
            self.vram_total_gb = ev.vram_total_gb
        self.status = "running"
        self.finished = self.failure = None
        self.eta.started(ev)
        if ev.resumed_from_step:
            self._restart_at(ev.resumed_from_step)
        self._add_log(ev.time, "info", f"run started on {ev.device}: {plural(ev.epochs, 'epoch')} x "
                                       f"{plural(ev.steps_per_epoch, 'step')}, {ev.train_images} training / {ev.val_images} validation images"
                      + (f", resumed at step {ev.resumed_from_step}" if ev.resumed_from_step else ""))
        self._mark("run", "progress")

    def _restart_at(self, step: int) -> None:
        """Steps after ``step`` will be redone (resume, OOM restart): forget them so lines do not double back."""
        for s in (self.loss, self.loss_smooth, self.lr):
            s.truncate_after(step)
        self.epochs.truncate_after_step(step)
        self._ema.reset()
        last = self.loss.last
        self.step = step
        if last is not None and math.isfinite(last[1]):
            self._ema.update(last[1])
        self._mark("steps", "epochs")

    def _on_PhaseChanged(self, ev: PhaseChanged) -> None:  # noqa: N802
        self.phase = ev.phase
        if ev.phase != "training":
            self.eta.interrupted()
        if ev.message:
            self._add_log(ev.time, "info", f"{ev.phase}: {ev.message}")
        self._mark("progress")

    def _on_StepMetrics(self, ev: StepMetrics) -> None:  # noqa: N802
        loss = _num(ev.loss)
        self.loss.append(ev.step, loss)
        self.loss_smooth.append(ev.step, self._ema.update(loss))
        self.lr.append(ev.step, _num(ev.lr))
        self.step, self.epoch, self.epoch_progress = ev.step, ev.epoch, ev.epoch_progress
        self.eta.step(ev)
        ours = self.eta.estimate_s
        self.images_per_s, self.eta_s = ev.images_per_s, (ours if ours is not None else ev.eta_s)
        if self.status == "idle":
            self.status = "running"
        self._mark("steps", "progress")

    def _on_EpochMetrics(self, ev: EpochMetrics) -> None:  # noqa: N802
        self.epochs.add(ev)
        self.eta.epoch_ended(ev)
        self.epoch = ev.epoch
        if ev.val_f1 is not None and (self.best_f1 is None or ev.val_f1 > self.best_f1):
            self.best_f1 = ev.val_f1
        self._mark("epochs", "progress")

    def _on_VramSample(self, ev: VramSample) -> None:  # noqa: N802
        if self.t0 is None:
            self.t0 = ev.time
        x = ev.time - self.t0
        used = ev.device_used_gb if ev.device_used_gb is not None else ev.reserved_gb
        self.vram_label = "card used" if ev.device_used_gb is not None else "reserved by training"
        self.vram_used.append(x, _num(used))
        self.vram_allocated.append(x, _num(ev.allocated_gb))
        if ev.device_total_gb is not None:
            self.vram_total_gb = ev.device_total_gb
        self._mark("vram")

    def _on_Checkpointed(self, ev: Checkpointed) -> None:  # noqa: N802
        if ev.is_best:
            self.best_checkpoint = ev.path
        else:
            self.last_checkpoint = ev.path
        self._mark("run")

    def _on_OomRecovered(self, ev: OomRecovered) -> None:  # noqa: N802
        self.eta.interrupted()
        self._add_log(ev.time, "warning", ev.message or (
            f"out of memory: batch {ev.old_batch_size} -> {ev.new_batch_size} x {ev.accumulate_grad_batches}"))
        self._restart_at(ev.step)

    def _on_LogMessage(self, ev: LogMessage) -> None:  # noqa: N802
        self._add_log(ev.time, ev.level, ev.message)

    def _on_RunFinished(self, ev: RunFinished) -> None:  # noqa: N802
        self.finished = ev
        self.status = "stopped" if ev.stopped_early else "finished"
        self.run_dir = ev.run_dir or self.run_dir
        if ev.best_f1 is not None:
            self.best_f1 = ev.best_f1
        self.best_checkpoint = ev.best_checkpoint or self.best_checkpoint
        self.bundle_dir = ev.bundle_dir
        self.phase = ""
        self.eta_s = None
        best = "n/a" if self.best_f1 is None else f"{self.best_f1:.4f}"
        self._add_log(ev.time, "info", f"run {'stopped' if ev.stopped_early else 'finished'} after "
                                       f"{plural(ev.epochs_done, 'epoch')}, {plural(ev.steps_done, 'step')}, "
                                       f"{ev.duration_s:.0f} s; best {HEADLINE_METRIC} {best}")
        self._mark("run", "progress")

    def _on_RunFailed(self, ev: RunFailed) -> None:  # noqa: N802
        self.failure = ev
        self.status = "failed"
        self.run_dir = ev.run_dir or self.run_dir
        self.phase = ""
        self.eta_s = None
        self._add_log(ev.time, "error", ev.reason + (f" - {ev.hint}" if ev.hint else ""))
        self._mark("run", "progress")

    def _add_log(self, t: float, level: str, text: str) -> None:
        self.log.append(LogEntry(t, level, text))
        self.log_count += 1
        self._mark("log")


def replay(events: Iterable[Event], **kwargs: Any) -> LiveMetrics:
    model = LiveMetrics(**kwargs)
    model.apply_many(events)
    return model


def replay_run(run_dir: str | Path, **kwargs: Any) -> LiveMetrics:
    """The plots of a past run from its ``events.jsonl`` (a truncated last line is skipped).

    A run that crashed leaves no terminal event: its status stays 'running' in the stream, which we
    report as 'incomplete' because nothing is running it any more.
    """
    path = Path(run_dir) / EVENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {EVENTS_FILE}, so there is nothing to plot (was this run "
                                f"started by medseg?)")
    model = replay(read_jsonl(path), **kwargs)
    if model.run_dir is None:
        model.run_dir = str(run_dir)
    if model.status in ("running", "idle"):
        model.status = "incomplete"
    return model
