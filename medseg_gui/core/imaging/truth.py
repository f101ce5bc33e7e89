"""Whether a ground truth can belong to a model: its class ids (and legend) against the model's classes.

Imaging, not engine: the viewer checks a loaded truth against the model's legend without running the
model, and ``core.engine.inference`` refuses the same truths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class ClassCountError(ValueError):
    """A ground truth (or its legend) does not fit the model's classes; the message names both."""


def check_truth_classes(truth: np.ndarray, num_classes: int, *, truth_source: str | Path,
                        model_source: str | Path, class_names: Sequence[str] = (),
                        truth_names: Sequence[str] | None = None) -> None:
    """Refuse a ground truth whose class ids (or legend) cannot belong to a model of ``num_classes``.

    A truth may lack some classes (an empty slice has only background), so only ids beyond the model's
    range, or a legend (e.g. DICOM SEG segment list) with a different count, are errors.
    """
    arr = np.asarray(truth)
    top = int(arr.max()) if arr.size else 0
    names = ", ".join(class_names) if class_names else ""
    model_desc = f"the model {model_source} predicts {num_classes} classes" + (f" ({names})" if names else "")
    if arr.size and int(arr.min()) < 0:
        raise ClassCountError(f"{truth_source}: ground truth holds negative values; expected class ids 0..{num_classes - 1}")
    if top >= num_classes:
        raise ClassCountError(
            f"{truth_source}: ground truth has class ids up to {top} ({top + 1} classes) but {model_desc} — "
            "load a ground truth made for these classes, or a model trained on them")
    if truth_names is not None and len(truth_names) != num_classes:
        raise ClassCountError(
            f"{truth_source}: ground truth defines {len(truth_names)} classes ({', '.join(truth_names)}) but "
            f"{model_desc} — load a ground truth made for these classes, or a model trained on them")
