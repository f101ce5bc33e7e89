"""The progressive plan: a quick check with a small model first, then the run.

A first round of "b0 + small images (224) → verify the environment" catches what would
otherwise fail an hour into a large run — a broken dataset, a driver problem, a loss that turns NaN —
in a minute. So the plan is two runs of the ordinary training session: a short check at SegFormer-b0,
224 px, a few dozen steps of one epoch, then the user's full configuration, which starts only if
the check finished and its loss stayed finite.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.session import TrainingSession
from medseg_gui.core.events import EpochMetrics, Event, LogMessage, RunFinished, Sink, StepMetrics
from medseg_gui.core.words import plural

CHECK_VARIANT = "b0"
CHECK_IMAGE_SIZE = 224
CHECK_STEPS = 20


def progressive_plan(config: cfg.RunConfig, check_steps: int = CHECK_STEPS) -> list[cfg.RunConfig]:
    """[quick check at b0/224 for ``check_steps`` steps of one epoch, the full configuration]."""
    check = config.copy()
    tr, ds = check.training, check.dataset
    if tr.variant != CHECK_VARIANT and tr.pretrained not in cfg.PRETRAINED_CHOICES:
        tr.pretrained = "scratch"  # local weights are for the full run's model; they would not load into b0
    tr.variant = CHECK_VARIANT
    ds.image_size = min(CHECK_IMAGE_SIZE, ds.image_size)  # never larger than the real run's images
    tr.epochs = 1
    tr.max_steps_per_epoch = check_steps
    tr.compile = "off"  # a minute's check must not pay a compile warm-up
    return [check, config.copy()]


def describe(plan: list[cfg.RunConfig]) -> list[str]:
    """One line per stage for the wizard and the log."""
    lines = []
    for i, stage in enumerate(plan):
        tr, ds = stage.training, stage.dataset
        kind = "quick check" if i < len(plan) - 1 else "full run"
        steps = f", {plural(tr.max_steps_per_epoch, 'step')}" if tr.max_steps_per_epoch else ""
        lines.append(f"{i + 1}. {kind}: SegFormer-{tr.variant}, batch {tr.batch_size}, {ds.image_size} px, "
                     f"{plural(tr.epochs, 'epoch')}{steps}")
    return lines


@dataclass
class StageResult:
    index: int
    config: cfg.RunConfig
    result: Any  # RunFinished | RunFailed
    passed: bool
    reason: str = ""


def judge_stage(result: Any, losses: list[float]) -> tuple[bool, str]:
    """A check passes when its run finished by itself, trained at least one step, and its loss stayed finite."""
    if not isinstance(result, RunFinished):
        reason = getattr(result, "reason", "the run failed")
        hint = getattr(result, "hint", "")
        return False, f"the check failed: {reason}" + (f" ({hint})" if hint else "")
    if result.stopped_early:
        return False, "the check was stopped"
    if result.steps_done <= 0:
        return False, "the check trained no steps (is the training set empty?)"
    if not losses:
        return False, "the check reported no loss"
    if any(not math.isfinite(v) for v in losses):
        return False, "the loss became NaN or infinite: lower training.lr or check the masks"
    return True, f"the check trained {plural(result.steps_done, 'step')}, loss {losses[-1]:.3f}"


class PlanRunner:
    """Runs the stages with ``TrainingSession`` one after another; stops at a failed check.

    ``stop()`` (any thread) stops the current stage and skips the rest. Every stage is a whole run
    with its own run folder and its own RunStarted ... RunFinished events on ``sink``; the plan's
    stage lines arrive as LogMessage events.
    """

    def __init__(self, plan: list[cfg.RunConfig], sink: Sink | None = None,
                 session_factory: Callable[..., Any] | None = None, **session_kwargs: Any):
        self.plan = plan
        self.sink = sink or (lambda event: None)
        self.session_factory = session_factory
        self.session_kwargs = session_kwargs
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._session: Any = None
        self.results: list[StageResult] = []

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._session is not None:
                self._session.stop()

    def run(self) -> list[StageResult]:
        factory = self.session_factory or TrainingSession
        lines = describe(self.plan)
        for i, stage in enumerate(self.plan):
            if self._stop.is_set():
                break
            last = i == len(self.plan) - 1
            self.sink(LogMessage(level="info", message=f"Plan step {lines[i]}"))
            losses: list[float] = []

            def record(event: Event, losses: list[float] = losses) -> None:
                if isinstance(event, StepMetrics):
                    losses.append(event.loss)
                elif isinstance(event, EpochMetrics) and event.train_loss is not None:
                    losses.append(event.train_loss)
                self.sink(event)

            session = factory(stage, record, **self.session_kwargs)
            with self._lock:
                self._session = session
                if self._stop.is_set():
                    session.stop()
            result = session.run()
            with self._lock:
                self._session = None
            passed, reason = judge_stage(result, losses)
            self.results.append(StageResult(i, stage, result, passed, reason))
            if not last:
                level = "info" if passed else "error"
                follow = "starting the full run" if passed else "the full run was not started"
                self.sink(LogMessage(level=level, message=f"Quick check {'passed' if passed else 'failed'}: "
                                                          f"{reason}; {follow}"))
                if not passed:
                    break
        return self.results


def run_plan(config: cfg.RunConfig, sink: Sink | None = None, check_steps: int = CHECK_STEPS,
             **session_kwargs: Any) -> list[StageResult]:
    """The whole plan for ``config`` in one call (blocking); see PlanRunner to stop it from elsewhere."""
    return PlanRunner(progressive_plan(config, check_steps), sink, **session_kwargs).run()
