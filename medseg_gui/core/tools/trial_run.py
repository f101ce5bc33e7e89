"""Throwaway trainers for the tools (LR finder, benchmark): the real run's parts, none of its side effects.

Why a separate module: the tools must measure *the run the user is about to start* — same model
source, same LightningModule, same data pipeline, same precision — so they build those parts as the
training session does, through ``core.engine.parts``. But they must leave nothing behind: no
checkpoints or events in a run folder, no change to the user's config. So the trainer lives in a
temporary folder that is deleted after, with checkpointing and logging off, on a private copy of the
config.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.atomic import make_temp_dir
from medseg_gui.core.cpu_threads import configure_cpu_training
from medseg_gui.core.data.datamodule import build_datamodule
from medseg_gui.core.engine.model import ModelSourceError, build_model
from medseg_gui.core.engine.parts import build_module, trainer_settings
from medseg_gui.core.gpu_identity import GpuSelectionError, plan_for_this_process
from medseg_gui.core.planning.precision import DeviceError, resolve_accelerator, resolve_precision

DatamoduleFactory = Callable[[cfg.RunConfig], Any]
Progress = Callable[[int, int], None]  # (done, total)


class ToolCancelled(Exception):
    """The user cancelled a tool run (the stop event was set)."""


class ToolError(RuntimeError):
    """A tool could not run; the message says why and what to do."""


@dataclass
class EngineParts:
    """What a trainer needs, built exactly as the training session builds them."""
    config: cfg.RunConfig  # a private copy
    module: Any  # SegModule
    datamodule: Any
    accelerator: str  # "gpu" | "cpu"
    precision: str  # resolved: "32", "16-mixed", "bf16-mixed"
    device: Any = None  # Lightning's devices, resolved at the first trainer (trial_device) and kept


def default_datamodule(config: cfg.RunConfig) -> Any:
    return build_datamodule(config)


def build_parts(config: cfg.RunConfig, datamodule_factory: DatamoduleFactory | None = None,
                log: Callable[[str, str], None] | None = None, module_class: type | None = None) -> EngineParts:
    """Model, SegModule and DataModule for ``config`` the way ``TrainingSession._fit_once`` makes them.

    ``module_class``: a SegModule subclass (the LR finder adds per-batch hooks that Lightning's tuner
    would not call on callbacks). Raises ToolError for configuration problems a user can fix.
    """

    config = config.copy()
    problems = cfg.validate(config)
    if problems:
        raise ToolError("the configuration has problems: " + "; ".join(str(p) for p in problems))
    tr = config.training
    try:
        accelerator = resolve_accelerator(tr.accelerator)
    except DeviceError as exc:
        raise ToolError(str(exc)) from None
    precision = resolve_precision(tr.precision, accelerator)
    if accelerator == "cpu":  # the same threads and loader workers as a CPU training run
        tr.num_workers = configure_cpu_training(tr.num_workers, processes=tr.devices, log=log).loader_workers
    try:
        model = build_model(config, log=log)
    except ModelSourceError as exc:
        raise ToolError(str(exc)) from None
    module = build_module(model, config, module_class)
    datamodule = (datamodule_factory or default_datamodule)(config)
    return EngineParts(config, module, datamodule, accelerator, precision)


def dataset_sizes(datamodule: Any) -> tuple[int, int]:
    """(train, validation) sample counts, from the data layer's properties or the usual attributes."""
    sizes = []
    for which in ("train", "val"):
        value = None
        try:
            value = getattr(datamodule, f"{which}_size", None)
        except Exception:  # noqa: BLE001 — a property that prepares the data may fail; fall through
            value = None
        if not isinstance(value, int):
            ds = getattr(datamodule, f"{which}_dataset", None)
            try:
                value = len(ds) if ds is not None else 0
            except TypeError:
                value = 0
        sizes.append(int(value))
    return sizes[0], sizes[1]


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary default_root_dir, deleted afterwards (Lightning's tuner writes a checkpoint there)."""
    path = make_temp_dir(prefix=f"medseg-{prefix}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def trial_device(config: cfg.RunConfig, accelerator: str) -> int | list[int]:
    """The one device a trial runs on: on the GPU, the first card the run would train on (training.gpus,
    or the one with the most free memory), as a CUDA ordinal, and made torch's current device, so the
    tools measure the card the run will use rather than CUDA's device 0."""
    if accelerator != "gpu":
        return 1
    tr = config.training
    try:
        ordinals = plan_for_this_process(tr.gpus[:1], 1).ordinals
    except GpuSelectionError as exc:
        raise ToolError(str(exc)) from None
    import torch

    if ordinals and torch.cuda.is_available() and ordinals[0] < torch.cuda.device_count():
        torch.cuda.set_device(ordinals[0])
    return ordinals[:1] or 1


def trainer_kwargs(parts: EngineParts, root: Path, **overrides: Any) -> dict[str, Any]:
    """Single-device trainer settings matching the session's, minus everything that writes files."""
    tr = parts.config.training
    if parts.device is None:  # once: a second trainer must not pick another card by free memory
        parts.device = trial_device(parts.config, parts.accelerator)
    return trainer_settings(accelerator=parts.accelerator, devices=parts.device, precision=parts.precision,
                            accumulate=tr.accumulate_grad_batches, root=str(root), **overrides)


def check_cancel(stop_event: threading.Event | None) -> None:
    if stop_event is not None and stop_event.is_set():
        raise ToolCancelled("cancelled")
