"""Loss and metrics against values worked out by hand on crafted masks."""

from __future__ import annotations

import math

import pytest
import torch

from medseg_gui.core.engine.losses import dice_ce_loss, soft_dice_loss, upsample_logits
from medseg_gui.core.engine.metrics import confusion_matrix, scores_from_confusion

# rows = true class; worked out in the comments below
MASK = torch.tensor([[0, 0, 1], [1, 2, 2]])
PRED = torch.tensor([[0, 1, 1], [1, 2, 0]])
# confusion: true0 -> [1,1,0], true1 -> [0,2,0], true2 -> [1,0,1]
# TP = 1,2,1  FP = 1,1,0  FN = 1,0,1
# Dice = 2/4, 4/5, 2/3   IoU = 1/3, 2/3, 1/2
DICE = [0.5, 0.8, 2 / 3]
IOU = [1 / 3, 2 / 3, 0.5]


def test_confusion_matrix_counts():
    cm = confusion_matrix(PRED, MASK, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_dice_iou_macro_f1_by_hand():
    s = scores_from_confusion(confusion_matrix(PRED, MASK, 3))
    assert s.dice == pytest.approx(DICE)
    assert s.iou == pytest.approx(IOU)
    assert s.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)  # the headline: foreground classes only
    with_bg = scores_from_confusion(confusion_matrix(PRED, MASK, 3), include_background=True)
    assert with_bg.macro_f1 == pytest.approx(sum(DICE) / 3)


def test_absent_class_is_nan_and_left_out_of_macro():
    s = scores_from_confusion(confusion_matrix(PRED, MASK, 4))
    assert math.isnan(s.dice[3]) and math.isnan(s.iou[3])
    assert s.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)


def test_counts_accumulate_over_batches_like_one_big_batch():
    a = confusion_matrix(PRED, MASK, 3) + confusion_matrix(MASK, MASK, 3)
    both = confusion_matrix(torch.stack([PRED, MASK]), torch.stack([MASK, MASK]), 3)
    assert torch.equal(a, both)
    # pooled over pixels: the perfect second image raises every class's Dice
    s = scores_from_confusion(a)
    assert s.dice[1] == pytest.approx(2 * 4 / (2 * 4 + 1))


def test_ignore_values_outside_classes_are_not_counted():
    mask = MASK.clone()
    mask[0, 0] = 255
    assert int(confusion_matrix(PRED, mask, 3).sum()) == 5


def _hard_logits(pred: torch.Tensor, num_classes: int, scale: float = 20.0) -> torch.Tensor:
    return (torch.nn.functional.one_hot(pred, num_classes).permute(2, 0, 1).float() * scale)[None]


def test_soft_dice_with_confident_logits_equals_hard_dice():
    logits = _hard_logits(PRED, 3, scale=40.0)
    loss = soft_dice_loss(logits, MASK[None], 3)
    assert float(loss) == pytest.approx(1 - sum(DICE) / 3, abs=1e-5)
    no_bg = soft_dice_loss(logits, MASK[None], 3, include_background=False)
    assert float(no_bg) == pytest.approx(1 - (0.8 + 2 / 3) / 2, abs=1e-5)


def test_dice_plus_ce():
    logits = _hard_logits(PRED, 3, scale=20.0)
    # two wrong pixels of six, each costing ~20 nats; right pixels cost ~2e-9
    expected_ce = 2 * 20.0 / 6
    total = dice_ce_loss(logits, MASK[None], 3)
    assert float(total) == pytest.approx(1 - sum(DICE) / 3 + expected_ce, abs=1e-3)


def test_perfect_prediction_loss_near_zero_and_gradient_flows():
    logits = _hard_logits(MASK, 3, 30.0).requires_grad_(True)
    loss = dice_ce_loss(logits, MASK[None], 3)
    assert float(loss.detach()) < 1e-4
    wrong = torch.zeros(1, 3, 2, 3, requires_grad=True)
    dice_ce_loss(wrong, MASK[None], 3).backward()
    assert wrong.grad is not None and float(wrong.grad.abs().sum()) > 0


def test_logits_are_upsampled_to_mask_size():
    logits = torch.randn(2, 4, 16, 16)
    up = upsample_logits(logits, (64, 64))
    assert up.shape == (2, 4, 64, 64)
    assert upsample_logits(up, (64, 64)) is up
