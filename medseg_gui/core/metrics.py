"""Validation metrics accumulated on the device as a confusion matrix, read once per epoch.

Definitions (pixel level, summed over the whole validation set, not averaged per image):
  Dice_c = F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c),   IoU_c = TP_c / (TP_c + FP_c + FN_c)
  macro F1 = mean of F1_c over classes, background included unless excluded.
This is what the tutorial reports as F1 (torchmetrics' MulticlassF1Score(average="macro") over the
epoch's pixels). A class that appears neither in the masks nor in the predictions (denominator 0)
has no defined score: it is NaN in the per-class lists and left out of the macro mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(preds: torch.Tensor, masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` counts, rows = true class, columns = predicted class (int64, on the input's device).

    Pixels whose mask value is outside 0..C-1 (e.g. an ignore value 255) are not counted.
    """
    target = masks.reshape(-1).long()
    pred = preds.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class SegScores:
    dice: list[float]  # per class, NaN where undefined
    iou: list[float]
    macro_f1: float  # NaN when no class is defined


def scores_from_confusion(confusion: torch.Tensor, include_background: bool = True) -> SegScores:
    cm = confusion.double().cpu()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    dice_den = 2 * tp + fp + fn
    iou_den = tp + fp + fn
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    dice = torch.where(dice_den > 0, 2 * tp / dice_den.clamp(min=1), nan)
    iou = torch.where(iou_den > 0, tp / iou_den.clamp(min=1), nan)
    kept = dice if include_background else dice[1:]
    defined = kept[~kept.isnan()]
    macro = float(defined.mean()) if defined.numel() else float("nan")
    return SegScores(dice=[float(v) for v in dice], iou=[float(v) for v in iou], macro_f1=macro)
