"""Per-class Dice and IoU of a prediction against a ground truth, in numpy.

The engine's ``core.metrics`` works on torch tensors during training; the viewer compares one slice
or one volume already in memory as numpy arrays and must not pull in torch just for that. Both count
through a confusion matrix, so the numbers agree.

A class absent from both prediction and truth has no defined score (0/0): it is reported as NaN and
left out of means, rather than counted as a perfect 1 that would flatter a model on empty slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def headline_score(per_class_dice: Sequence[float]) -> float:
    """The headline from per-class Dice (index 0 = background): mean over the defined foreground
    classes, NaN when none is defined."""
    values = np.asarray(list(per_class_dice)[1:], dtype=np.float64)
    return _nanmean(values)


@dataclass
class ClassScores:
    """Scores per class id (index = class). ``present[k]``: class k occurs in truth or prediction."""

    dice: np.ndarray
    iou: np.ndarray
    truth_pixels: np.ndarray
    pred_pixels: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.dice.shape[0])

    def mean_dice(self, include_background: bool = False) -> float:
        """The headline (``core.headline.HEADLINE_METRIC``) by default: foreground classes only."""
        return _nanmean(self.dice) if include_background else headline_score(self.dice)

    def mean_iou(self, include_background: bool = False) -> float:
        return _nanmean(self.iou if include_background else self.iou[1:])

    def as_dict(self, class_names: list[str] | None = None) -> dict[str, dict[str, float | int | None]]:
        names = class_names or [f"class_{k}" for k in range(self.num_classes)]
        return {names[k] if k < len(names) else f"class_{k}": {
            "dice": _num(self.dice[k]), "iou": _num(self.iou[k]),
            "truth_pixels": int(self.truth_pixels[k]), "pred_pixels": int(self.pred_pixels[k])}
            for k in range(self.num_classes)}


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _num(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``[truth, pred]`` pixel counts (int64). Ids outside 0..num_classes-1 are a caller error."""
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth shape {t.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for name, arr in (("prediction", p), ("ground truth", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds class ids {int(arr.min())}..{int(arr.max())}, outside "
                             f"0..{num_classes - 1} for {num_classes} classes")
    flat = t.astype(np.int64).ravel() * num_classes + p.astype(np.int64).ravel()
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_confusion(confusion: np.ndarray) -> ClassScores:
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    truth = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(truth + pred > 0, 2 * tp / (truth + pred), np.nan)
        iou = np.where(truth + pred - tp > 0, tp / (truth + pred - tp), np.nan)
    return ClassScores(dice=dice, iou=iou, truth_pixels=truth.astype(np.int64), pred_pixels=pred.astype(np.int64))


def class_scores(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> ClassScores:
    """Dice and IoU per class over all pixels of ``pred``/``truth`` (a slice or a whole volume)."""
    return scores_from_confusion(confusion_matrix(pred, truth, num_classes))
