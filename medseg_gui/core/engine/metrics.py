"""Validation metrics accumulated on the device as a confusion matrix, read once per epoch.

Definitions (pixel level, summed over the whole validation set, not averaged per image):
  Dice_c = F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c),   IoU_c = TP_c / (TP_c + FP_c + FN_c)
  headline = mean of Dice_c over the foreground classes (``core.headline.HEADLINE_METRIC``, the one
  score the Training page, the runs list, the Viewer and the CLI show; background included only when
  asked, as torchmetrics' MulticlassF1Score(average="macro") would).
A class that appears neither in the masks nor in the predictions (denominator 0) has no defined
score: it is NaN in the per-class lists and left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medseg_gui.core.imaging.seg_metrics import headline_score


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
    macro_f1: float  # the headline (mean foreground Dice); NaN when no class is defined. The field keeps
    #                 its old name because events and checkpoints carry it as val_f1/best_f1.


def scores_from_confusion(confusion: torch.Tensor, include_background: bool = False) -> SegScores:
    cm = confusion.double().cpu()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    dice_den = 2 * tp + fp + fn
    iou_den = tp + fp + fn
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    dice = torch.where(dice_den > 0, 2 * tp / dice_den.clamp(min=1), nan)
    iou = torch.where(iou_den > 0, tp / iou_den.clamp(min=1), nan)
    per_class = [float(v) for v in dice]
    if include_background:
        defined = dice[~dice.isnan()]
        macro = float(defined.mean()) if defined.numel() else float("nan")
    else:
        macro = headline_score(per_class)  # the one definition of the headline
    return SegScores(dice=per_class, iou=[float(v) for v in iou], macro_f1=macro)
