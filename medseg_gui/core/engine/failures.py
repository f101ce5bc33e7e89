"""Why a run failed, in one place: an exception (or an unusable dataset) becomes a ``RunFailed`` event.

The CLI, the session and the GUI's training worker all turn unexpected exceptions into the same
terminal event, so the user sees the same reason, kind and hint wherever the run was started. The
kinds (``disk``, ``oom``, ``data``, ``config``, ``error``) pick the failure dialog's title and the hint.
Nothing here imports torch: the GUI classifies failures before torch is ever loaded.
"""

from __future__ import annotations

import traceback
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.atomic import disk_error_path, is_disk_full
from medseg_gui.core.data.formats import resolve_dataset_path
from medseg_gui.core.data.validate import validate_dataset
from medseg_gui.core.events import RunFailed

# What to do about a failure, by kind, when the failure itself carries no hint.
HINTS = {
    "disk": "free some disk space, then resume the run: the checkpoints saved before are kept",
    "oom": "reduce the batch size (training.batch_size), the image size or the model variant; the "
           "recommendation on the Hardware page fits this GPU",
    "data": "run the dataset check (medseg data check PATH, or File > Open dataset) and fix or remove the "
            "files it lists",
    "config": "fix the listed settings and start again",
    "error": "see the details; the run folder keeps the last good checkpoint, so you can resume",
}


def hint_for(failure: RunFailed) -> str:
    """The failure's own hint, else the hint for its kind."""
    return failure.hint or HINTS.get(failure.kind, HINTS["error"])


def is_oom(exc: BaseException) -> bool:
    """A GPU out-of-memory error (torch's ``OutOfMemoryError`` or a CUDA ``RuntimeError``), by name so
    torch need not be imported to ask."""
    if any(klass.__name__ == "OutOfMemoryError" for klass in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def classify_failure(exc: BaseException, run_dir: str = "") -> RunFailed:
    """An unexpected exception as a RunFailed with a one-line reason, a kind, a hint and the traceback."""
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if is_disk_full(exc):
        where = disk_error_path(exc) or run_dir or "the run folder"
        return RunFailed(run_dir=run_dir, reason=f"disk full while writing {where}", kind="disk", detail=detail,
                         hint=HINTS["disk"])
    if is_oom(exc) or isinstance(exc, MemoryError):
        return RunFailed(run_dir=run_dir, reason="out of memory", kind="oom", detail=detail, hint=HINTS["oom"])
    if ".data" in module or "Dataset" in name or "Data" in name:
        return RunFailed(run_dir=run_dir, reason=f"dataset problem: {exc}", kind="data", detail=detail,
                         hint=HINTS["data"])
    if isinstance(exc, cfg.ConfigError):
        return RunFailed(run_dir=run_dir, reason=str(exc), kind="config", detail=detail, hint=HINTS["config"])
    return RunFailed(run_dir=run_dir, reason=f"{name}: {exc}", kind="error", detail=detail, hint=HINTS["error"])


def check_dataset(config: cfg.RunConfig) -> tuple[Any, RunFailed | None]:
    """The data layer's validation report for the config's dataset, or the RunFailed that stops the start.

    Callers run it off the GUI thread: the demo may be generated on first use and a big folder takes
    seconds. The report is handed on to the DataModule so the dataset is not checked twice.
    """

    ds, tr = config.dataset, config.training
    try:
        root = resolve_dataset_path(ds.path, ds.image_size)
        if not root.exists():
            raise FileNotFoundError(f"dataset folder {root} does not exist")
        report = validate_dataset(root, ds.num_classes, class_names=ds.class_names, val_fraction=ds.val_fraction,
                                  seed=tr.seed)
    except Exception as exc:  # noqa: BLE001 — any reason the data cannot be read stops the start
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return None, RunFailed(run_dir="", reason=f"dataset {ds.path!r} cannot be used: {exc}", kind="data",
                               detail=detail, hint=HINTS["data"])
    if not report.can_train:
        return report, RunFailed(run_dir="", reason=f"dataset {report.root} cannot be used: {report.verdict}",
                                 kind="data", hint=HINTS["data"], detail=report.to_text())
    return report, None
