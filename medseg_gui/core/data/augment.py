"""The tutorial's training augmentations, written for albumentations 2.0.8's current API.

Tutorial (UW-Madison SegFormer notebook) → here:

* ``Resize`` to the training size: kept first, so every later step works on the final size;
  masks use nearest-neighbour (``mask_interpolation=INTER_NEAREST``) so class ids never blend.
* ``HorizontalFlip(p=0.5)``, ``VerticalFlip(p=0.5)`` — ``dataset.augment_flip``.
* ``ShiftScaleRotate(shift_limit=0.12, scale_limit=0.12, rotate_limit=..., p=0.5)`` is deprecated in
  2.0.8; the same geometry is ``Affine(translate_percent=±0.12, scale=1±0.12, rotate=±15°)`` with a
  constant zero border for image and mask — ``dataset.augment_shift_scale_rotate``. (The tutorial's
  ``rotate_limit=0.15`` is in degrees, i.e. practically no rotation; ±15° is what it meant to do.)
* ``RandomBrightnessContrast(p=0.5)`` — ``dataset.augment_brightness_contrast``.
* ``CoarseDropout(max_holes=8, min_holes=5, max_height=S//20, max_width=S//20, mask_fill_value=0)``
  → ``num_holes_range=(5, 8)``, ``hole_height_range``/``hole_width_range`` up to S//20 px,
  ``fill=0``, ``fill_mask=0`` (as the tutorial: the dropped area counts as background) —
  ``dataset.augment_coarse_dropout``.

Normalisation is *not* here: images stay single-channel uint8 through augmentation (cheaper: one
channel, integer maths) and become float on the device (``core.data.normalize.to_model_input``).
Validation gets the resize only.
"""

from __future__ import annotations

import os
from typing import Any

from medseg_gui.core.config import DatasetConfig

SHIFT_LIMIT = 0.12
SCALE_LIMIT = 0.12
ROTATE_LIMIT_DEG = 15.0


def _albumentations() -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks PyPI on import otherwise
    import albumentations as A

    return A


def build_train_transform(ds: DatasetConfig, seed: int | None = None) -> Any:
    """``A.Compose`` for training: resize, then each augmentation the config switches on."""
    import cv2

    A = _albumentations()
    size = ds.image_size
    steps: list[Any] = [_resize(A, size)]
    if ds.augment_flip:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if ds.augment_shift_scale_rotate:
        steps.append(A.Affine(
            translate_percent=(-SHIFT_LIMIT, SHIFT_LIMIT), scale=(1 - SCALE_LIMIT, 1 + SCALE_LIMIT),
            rotate=(-ROTATE_LIMIT_DEG, ROTATE_LIMIT_DEG), interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.5))
    if ds.augment_brightness_contrast:
        steps.append(A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5))
    if ds.augment_coarse_dropout:
        hole = max(1, size // 20)
        steps.append(A.CoarseDropout(num_holes_range=(5, 8), hole_height_range=(1, hole),
                                     hole_width_range=(1, hole), fill=0, fill_mask=0, p=0.5))
    return A.Compose(steps, seed=seed)


def build_val_transform(ds: DatasetConfig) -> Any:
    """Validation/inference: resize only (same interpolation as training)."""
    A = _albumentations()
    return A.Compose([_resize(A, ds.image_size)])


def _resize(A: Any, size: int) -> Any:
    import cv2

    return A.Resize(size, size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)


def apply(transform: Any, image: Any, mask: Any) -> tuple[Any, Any]:
    """Run a transform on a uint8 image (``[H, W]`` or ``[H, W, 3]``) and its mask; keep the image's
    rank (albumentations may hand back ``[H, W, 1]`` for grey input)."""
    out = transform(image=image, mask=mask)
    img, msk = out["image"], out["mask"]
    if image.ndim == 2 and img.ndim == 3:
        img = img[:, :, 0]
    if msk.ndim == 3:
        msk = msk[:, :, 0]
    return img, msk
