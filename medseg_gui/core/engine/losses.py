"""The tutorial's loss: soft Dice over the softmax plus cross-entropy, on logits at mask size.

SegFormer predicts at 1/4 resolution; the tutorial upsamples the logits (bilinear) to the mask
before the loss, so boundaries are scored at full resolution. Imported only by training code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, C, h, w]`` logits to ``size`` (no-op when already there)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor, num_classes: int,
                   include_background: bool = True, smooth: float = 1e-8) -> torch.Tensor:
    """1 - mean soft Dice, per image and class as the tutorial computes it.

    Dice_{b,c} = (2 Σ p·g + smooth) / (Σ p + Σ g + smooth) over the pixels of image b, with p the
    softmax probability and g the one-hot mask; the mean runs over images and (kept) classes. A class
    absent from both prediction and mask scores ~1 thanks to ``smooth``, as in the tutorial.
    """
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = (2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - dice.mean()


def dice_ce_loss(logits: torch.Tensor, masks: torch.Tensor, num_classes: int,
                 include_background: bool = True) -> torch.Tensor:
    """Soft Dice + cross-entropy (equal weights, as the tutorial). ``logits`` must be at mask size."""
    ce = F.cross_entropy(logits.float(), masks.long())
    return soft_dice_loss(logits, masks, num_classes, include_background) + ce
