"""The learning-rate finder: Lightning's ``Tuner.lr_find`` on the real run's parts.

The LR range test trains for a few dozen batches while the learning rate grows exponentially and
records the (smoothed) loss; the suggestion is the LR where the loss falls fastest. It runs in a
throwaway trainer (``core.trial_run``): a temporary root folder, deleted after, so the tuner's own
restore checkpoint never lands in a run folder, and a copy of the config so the real run's batch
limits and LR are untouched until the user presses "Use this LR".

Lightning replaces the trainer's callbacks during the search, so progress and cancel are driven
from the LightningModule's own ``on_train_batch_end`` hook (a SegModule subclass), which it keeps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.parts import free_cuda
from medseg_gui.core.engine.quiet import quiet_lightning
from medseg_gui.core.tools.trial_run import (DatamoduleFactory, Progress, ToolCancelled, build_parts, scratch_dir,
                                             trainer_kwargs)

SKIP_BEGIN = 10  # Lightning's defaults for the suggestion: the first points are noise,
SKIP_END = 1  # the last one is usually the divergence
MIN_POINTS = SKIP_BEGIN + SKIP_END + 2  # torch.gradient needs two points after skipping


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed; NaN where a batch gave no loss
    suggestion: float | None
    message: str  # one line for the user: the suggestion, or why there is none and what to do
    batches: int = 0
    diverged: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["losses"] = [None if not math.isfinite(v) else v for v in self.losses]
        return data


PointSink = Callable[[float, float], None]  # (learning rate, smoothed loss) after each batch


def _finder_module_class(progress: Progress | None, stop_event: threading.Event | None, total: int,
                         on_point: PointSink | None = None) -> type:
    from medseg_gui.core.engine.lit_module import SegModule

    class FinderModule(SegModule):
        """SegModule plus progress/cancel per batch (module hooks survive the tuner's callback swap)."""

        def on_train_start(self) -> None:
            for callback in self.trainer.callbacks:  # the tuner's recorder: no tqdm bar on the console
                if hasattr(callback, "progress_bar_refresh_rate"):
                    callback.progress_bar_refresh_rate = 0

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._finder_batches = getattr(self, "_finder_batches", 0) + 1
            if on_point is not None:  # the point just recorded, so the GUI draws the curve as it grows
                recorder = next((c for c in self.trainer.callbacks if hasattr(c, "lrs") and hasattr(c, "losses")),
                                None)  # Lightning's recorder runs its batch-end hook before the module's
                if recorder is not None and recorder.lrs and len(recorder.losses) == len(recorder.lrs):
                    on_point(float(recorder.lrs[-1]), float(recorder.losses[-1]))
            if progress is not None:
                progress(min(self._finder_batches, total), total)
            if stop_event is not None and stop_event.is_set():
                self.trainer.should_stop = True  # the tuner keeps it: the search ends after this batch

    return FinderModule


def find_lr(config: cfg.RunConfig, *, num_training: int = 100, min_lr: float = 1e-7, max_lr: float = 1.0,
            max_epochs: int | None = None, early_stop_threshold: float | None = 4.0,
            datamodule_factory: DatamoduleFactory | None = None, progress: Progress | None = None,
            stop_event: threading.Event | None = None, on_point: PointSink | None = None) -> LrFindResult:
    """Run the LR range test for ``config`` on its dataset and return the curve and a suggestion.

    ``num_training`` batches (optimiser steps) at most; the loader repeats epochs to reach them unless
    ``max_epochs`` caps it. ``on_point(lr, smoothed_loss)`` is called after each batch (from the
    training thread) so a plot can grow live. Raises ToolError for an unusable config, ToolCancelled.
    """
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    if num_training < 2:
        raise ValueError("num_training must be at least 2")
    module_class = _finder_module_class(progress, stop_event, num_training, on_point)
    parts = build_parts(config, datamodule_factory, module_class=module_class)
    L.seed_everything(parts.config.training.seed, verbose=False)
    try:
        with scratch_dir("lr-find") as root, quiet_lightning(trial=True):
            trainer = L.Trainer(**trainer_kwargs(parts, root, max_epochs=max_epochs if max_epochs else -1,
                                                 max_steps=num_training, limit_val_batches=0))
            finder = Tuner(trainer).lr_find(parts.module, datamodule=parts.datamodule, min_lr=min_lr,
                                            max_lr=max_lr, num_training=num_training, mode="exponential",
                                            early_stop_threshold=early_stop_threshold, update_attr=False)
        if stop_event is not None and stop_event.is_set():
            raise ToolCancelled("learning-rate search cancelled")
        lrs = [float(v) for v in finder.results.get("lr", [])]
        losses = [float(v) for v in finder.results.get("loss", [])]
    finally:
        del parts
        free_cuda()
    n = min(len(lrs), len(losses))
    lrs, losses = lrs[:n], losses[:n]
    diverged = n < num_training and (max_epochs is None)
    settings = {"num_training": num_training, "min_lr": min_lr, "max_lr": max_lr, "max_epochs": max_epochs,
                "batch_size": config.training.batch_size, "variant": config.training.variant,
                "image_size": config.dataset.image_size}
    suggestion, message = _suggest(finder, lrs, losses, num_training, diverged)
    return LrFindResult(lrs, losses, suggestion, message, batches=n, diverged=diverged, settings=settings)


def _suggest(finder: Any, lrs: list[float], losses: list[float], requested: int,
             diverged: bool) -> tuple[float | None, str]:
    finite = sum(1 for v in losses[SKIP_BEGIN:len(losses) - SKIP_END] if math.isfinite(v))
    if finite < 2:
        return None, few_points_message(len(losses), requested, diverged)
    value = finder.suggestion(skip_begin=SKIP_BEGIN, skip_end=SKIP_END)
    if value is None or not math.isfinite(value) or value <= 0:
        return None, few_points_message(len(losses), requested, diverged)
    value = float(min(max(value, 1e-7), 1.0))  # the config's valid range for training.lr
    return value, (f"suggested learning rate {value:.2e} (steepest loss descent over {len(losses)} batches; "
                   f"use it as a starting point, not a guarantee)")


def few_points_message(batches: int, requested: int, diverged: bool) -> str:
    """Why no suggestion: too few usable loss points after skipping the noisy start and the end."""
    if diverged and batches < requested:
        return (f"only {batches} batches before the loss diverged: no suggestion. Lower the maximum LR or "
                f"use a larger dataset or more steps")
    return (f"only {batches} batches: use a larger dataset or more steps (the suggestion needs at least "
            f"{MIN_POINTS}, the first {SKIP_BEGIN} are skipped as noise)")


def apply_lr(config: cfg.RunConfig, lr: float) -> cfg.RunConfig:
    """A copy of ``config`` with the learning rate set ("Use this LR"), type- and range-checked."""
    out = config.copy()
    cfg.set_value(out, "training.lr", float(lr))
    problems = [p for p in cfg.validate(out) if p.field == "training.lr"]
    if problems:
        raise cfg.ConfigError(problems)
    return out
