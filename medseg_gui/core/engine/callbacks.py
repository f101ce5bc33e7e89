"""The Lightning callback that turns training progress into protocol events (core/events.py).

It runs on every DDP rank (metric reductions need all ranks) but emits and writes only on rank 0.
Step events are throttled by time, not by step count: reading the loss is the one host sync, and a
fast GPU would otherwise flood the GUI; a slow CPU still reports every few seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from medseg_gui.core import hardware
from medseg_gui.core.events import (Checkpointed, EpochMetrics, PhaseChanged, RunStarted, StepMetrics,
                                    VramSample)
from medseg_gui.core.planning.speed import GRAPH_WARMUP_STEPS


class StopRequested(Exception):
    """Raised inside validation to stop at once (Lightning has no cooperative stop mid-validation)."""


@dataclass
class EpochRecord:
    """What the session needs to checkpoint and report one finished epoch."""
    epoch: int  # 1-based count of completed epochs
    step: int
    train_loss: float | None
    val_loss: float | None
    val_f1: float | None
    dice: list[float]
    iou: list[float]
    lr: float | None
    epoch_time_s: float


@dataclass
class CallbackHooks:
    """What the callback asks of the session (kept as callables so the callback has no session import)."""
    emit: Callable[[Any], None]
    stop_event: threading.Event
    on_epoch_done: Callable[[L.Trainer, Any, EpochRecord], list[Checkpointed]]
    run_started: Callable[[L.Trainer, Any], RunStarted | None]
    is_rank_zero: bool = True
    step_interval_s: float = 0.5
    stop_check_every: int = 10  # DDP only: batches between cross-rank stop checks
    vram_probe: Callable[[], VramSample | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EventCallback(L.Callback):
    def __init__(self, hooks: CallbackHooks, total_epochs: int):
        self.hooks = hooks
        self.total_epochs = total_epochs
        self.stopping = False
        self._last_emit = time.monotonic()
        self._images_since = 0
        self._epoch_start = time.monotonic()
        self._sec_per_batch: float | None = None
        self._val_seconds: float | None = None
        self._val_start = 0.0
        self._batches_this_epoch = 0
        self._compiling_since: float | None = None

    # ---- helpers -------------------------------------------------------------------------------
    def _emit(self, event: Any) -> None:
        if self.hooks.is_rank_zero:
            self.hooks.emit(event)

    def _stop_requested(self, trainer: L.Trainer, batch_idx: int) -> bool:
        local = self.hooks.stop_event.is_set()
        if trainer.world_size <= 1:
            return local
        if (batch_idx + 1) % self.hooks.stop_check_every:
            return False
        # every rank must stop after the same batch, or the next all-reduce would hang
        return bool(trainer.strategy.reduce_boolean_decision(local, all=False))

    def request_stop(self, trainer: L.Trainer) -> None:
        """Stop after this batch, skipping the validation Lightning would force on should_stop."""
        self.stopping = True
        trainer.should_stop = True
        trainer.limit_val_batches = 0

    # ---- run -----------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        started = self.hooks.run_started(trainer, pl_module)
        if started is not None:
            self._emit(started)
        if getattr(pl_module, "compile_mode", None):
            self._compiling_since = time.monotonic()
            self._emit(PhaseChanged(phase="compiling", message="compiling the model (the first run of a "
                                    "configuration takes one to two minutes; later runs load it from the cache)"))
        elif getattr(pl_module, "cuda_graphs", False):
            self._compiling_since = time.monotonic()
            self._emit(PhaseChanged(phase="compiling", message="capturing the training step as a CUDA graph "
                                    f"after {GRAPH_WARMUP_STEPS} warm-up steps"))
        else:
            self._emit(PhaseChanged(phase="training"))

    @staticmethod
    def _warmup_batches(pl_module: Any) -> int:
        """Calls until the fast step runs: inductor's CUDA graphs record on the 3rd; ours capture
        after the warm-up steps (core/engine/step_graph.py)."""
        if getattr(pl_module, "cuda_graphs", False):
            # warm-up counts optimiser steps; a graph that accumulates sees k micro-batches per step
            return GRAPH_WARMUP_STEPS * max(1, int(getattr(pl_module, "graph_accumulate", 1) or 1)) + 1
        return 3

    def _warmup_done(self, pl_module: Any) -> None:
        """The step has been compiled and/or captured: from now on batches run at full speed."""
        pl_module.read_window_loss()  # a sync, so the warm-up time is real
        now = time.monotonic()
        took = now - (self._compiling_since or now)
        self._compiling_since = None
        self._epoch_start, self._batches_this_epoch = now, 0  # ETA from compiled steps only
        self._last_emit, self._images_since = now, 0
        graph = getattr(pl_module, "_step_graph", None)
        if graph is not None and graph.failed:
            what = "compiled" if getattr(pl_module, "compile_mode", None) else "warmed up"
            message = f"{what} in {took:.0f} s (CUDA graph {graph.failed}: running without it)"
        elif getattr(pl_module, "compile_mode", None):
            message = f"compiled in {took:.0f} s"
        else:
            message = f"CUDA graph captured in {took:.1f} s"
        self._emit(PhaseChanged(phase="training", message=message))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._epoch_start = time.monotonic()
        self._last_emit = time.monotonic()
        self._images_since = 0
        self._batches_this_epoch = 0
        self._epoch_lr = pl_module.current_lr()  # Lightning steps epoch schedulers before epoch end

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        pl_module.batches_done += 1
        self._batches_this_epoch += 1
        self._images_since += int(batch[0].shape[0])
        if self._stop_requested(trainer, batch_idx):
            self.request_stop(trainer)
            return
        if self._compiling_since is not None and self._batches_this_epoch >= self._warmup_batches(pl_module):
            self._warmup_done(pl_module)
            return
        now = time.monotonic()
        elapsed = now - self._last_emit
        if elapsed < self.hooks.step_interval_s and batch_idx + 1 < trainer.num_training_batches:
            return
        loss = pl_module.read_window_loss()  # the host sync, once per interval
        now = time.monotonic()
        elapsed = max(now - self._last_emit, 1e-9)
        batch_time = (now - self._epoch_start) / max(1, self._batches_this_epoch)
        self._sec_per_batch = batch_time
        if not self.hooks.is_rank_zero:
            self._last_emit, self._images_since = now, 0
            return
        per_epoch = max(1, trainer.num_training_batches)
        ips = self._images_since * trainer.world_size / elapsed
        self._emit(StepMetrics(step=pl_module.batches_done, epoch=pl_module.run_epoch + 1,
                               loss=math.nan if loss is None else loss, lr=self._epoch_lr or pl_module.current_lr() or 0.0,
                               images_per_s=ips, eta_s=self._eta(trainer, pl_module, batch_idx),
                               epoch_progress=min(1.0, (batch_idx + 1) / per_epoch)))
        if self.hooks.vram_probe is not None:
            sample = self.hooks.vram_probe()
            if sample is not None:
                sample.step = pl_module.batches_done
                self._emit(sample)
        self._last_emit, self._images_since = now, 0

    def _eta(self, trainer: L.Trainer, pl_module: Any, batch_idx: int) -> float | None:
        if self._sec_per_batch is None:
            return None
        per_epoch = trainer.num_training_batches
        if not isinstance(per_epoch, int) and not (isinstance(per_epoch, float) and math.isfinite(per_epoch)):
            return None
        epochs_after = max(0, self.total_epochs - pl_module.run_epoch - 1)
        batches_left = (per_epoch - batch_idx - 1) + epochs_after * per_epoch
        val = (self._val_seconds or 0.0) * (epochs_after + 1)
        return batches_left * self._sec_per_batch + val

    # ---- validation ----------------------------------------------------------------------------
    def on_validation_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._val_start = time.monotonic()
        self._emit(PhaseChanged(phase="validating"))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.world_size <= 1 and self.hooks.stop_event.is_set():
            self.stopping = True
            raise StopRequested()

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._val_seconds = time.monotonic() - self._val_start
        self._emit(PhaseChanged(phase="training"))

    # ---- epoch end -----------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.stopping:
            return  # a partial epoch: the session saves its state, no metrics row
        train_loss = pl_module.read_epoch_train_loss()  # all ranks: it reduces across them
        val = pl_module.last_val
        scores = val.scores
        record = EpochRecord(
            epoch=pl_module.run_epoch + 1, step=pl_module.batches_done, train_loss=train_loss,
            val_loss=val.loss, val_f1=None if scores is None or math.isnan(scores.macro_f1) else scores.macro_f1,
            dice=list(scores.dice) if scores else [], iou=list(scores.iou) if scores else [],
            lr=self._epoch_lr, epoch_time_s=time.monotonic() - self._epoch_start)
        pl_module.last_val = type(val)(None, None)
        if not self.hooks.is_rank_zero:
            return
        self._emit(EpochMetrics(epoch=record.epoch, step=record.step, train_loss=record.train_loss,
                                val_loss=record.val_loss, val_f1=record.val_f1, per_class_dice=record.dice,
                                per_class_iou=record.iou, lr=record.lr, epoch_time_s=record.epoch_time_s))
        for event in self.hooks.on_epoch_done(trainer, pl_module, record):
            self._emit(event)


def cuda_vram_probe(device_index: int) -> Callable[[], VramSample | None]:
    """Allocator figures from torch, the card's used/total from NVML (via core.hardware) if present."""
    uuid = None
    try:
        uuid = str(torch.cuda.get_device_properties(device_index).uuid)
    except Exception:  # noqa: BLE001 — older torch or no CUDA
        pass

    def probe() -> VramSample | None:
        gib = 1024**3
        allocated = torch.cuda.memory_allocated(device_index) / gib
        reserved = torch.cuda.memory_reserved(device_index) / gib
        used = total = None
        try:
            gpus = hardware.probe().gpus
            match = [g for g in gpus if g.uuid and uuid and g.uuid.endswith(uuid)] or (gpus if len(gpus) == 1 else [])
            if match:
                used, total = match[0].used_gb, match[0].total_gb
        except Exception:  # noqa: BLE001 — NVML is a nice-to-have here, never fatal
            pass
        return VramSample(step=0, allocated_gb=allocated, reserved_gb=reserved, device_used_gb=used,
                          device_total_gb=total)

    return probe
