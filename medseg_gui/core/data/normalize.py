"""uint8 images → the model's float input (3 channels, ImageNet mean/std), on whatever device they are.

Why here and not in the loader: the loader ships uint8 ``[B, C, S, S]`` (C = 1 for grey), which is
4x fewer bytes than float and 12x fewer than float RGB through the worker pipes, pinned memory and
the host→device copy. The arithmetic is one fused multiply-add on the device. Grey images become
3 channels by broadcasting inside that same operation, so no ``repeat`` copy is made first.

SegFormer's pretrained weights expect ImageNet normalisation of RGB; a grey slice is fed as R=G=B.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# x_norm = (x / 255 - mean) / std = x * scale + shift
_SCALE = tuple(1.0 / (255.0 * s) for s in IMAGENET_STD)
_SHIFT = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))

_CONSTANTS: dict[tuple[str, str], tuple["torch.Tensor", "torch.Tensor"]] = {}


def _constants(device: "torch.device", dtype: "torch.dtype") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-device scale/shift tensors, cached so a training step does no host→device copy for them."""
    import torch

    key = (str(device), str(dtype))
    cached = _CONSTANTS.get(key)
    if cached is None:
        scale = torch.tensor(_SCALE, dtype=dtype, device=device).view(1, 3, 1, 1)
        shift = torch.tensor(_SHIFT, dtype=dtype, device=device).view(1, 3, 1, 1)
        cached = _CONSTANTS[key] = (scale, shift)
    return cached


def input_constants(device: "torch.device") -> tuple["torch.Tensor", "torch.Tensor"]:
    """The float32 (scale, shift) pair for ``device``; hold on to it to skip the cache lookup."""
    import torch

    return _constants(torch.device(device), torch.float32)


def to_model_input(images: "torch.Tensor", channels_last: bool | None = None,
                   constants: tuple["torch.Tensor", "torch.Tensor"] | None = None) -> "torch.Tensor":
    """uint8 ``[B, C, H, W]`` (C = 1 or 3) → float32 ``[B, 3, H, W]``, ImageNet-normalised.

    ``channels_last``: the output memory format. ``None`` follows the input when that is
    unambiguous (a 3-channel channels-last tensor); a 1-channel tensor has the same strides in both
    formats, so pass ``True`` to get a channels-last result from grey input.
    ``constants``: from ``input_constants`` (a compiled step should not trace the cache lookup).
    """
    import torch

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"to_model_input expects [B, 1 or 3, H, W] images, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"to_model_input expects uint8 images (0..255), got {images.dtype}")
    if channels_last is None:
        channels_last = (images.shape[1] == 3 and not images.is_contiguous()
                         and images.is_contiguous(memory_format=torch.channels_last))
    b, _, h, w = images.shape
    scale, shift = constants if constants is not None else _constants(images.device, torch.float32)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((b, 3, h, w), dtype=torch.float32, device=images.device, memory_format=fmt)
    # One kernel: out = shift + images * scale, with 1→3 channel broadcasting and uint8→float promotion.
    return torch.addcmul(shift, images, scale, out=out)


def to_model_input_np(images: np.ndarray) -> np.ndarray:
    """NumPy twin for inference without torch tensors: uint8 ``[H, W]``, ``[H, W, 3]``, ``[C, H, W]``
    or ``[B, C, H, W]`` → float32 ``[B, 3, H, W]``."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_model_input_np expects uint8 images, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr.transpose(2, 0, 1)[None] if arr.shape[2] == 3 and arr.shape[0] != 3 else arr[None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"to_model_input_np cannot interpret shape {np.shape(images)}")
    scale = np.asarray(_SCALE, dtype=np.float32).reshape(1, 3, 1, 1)
    shift = np.asarray(_SHIFT, dtype=np.float32).reshape(1, 3, 1, 1)
    return (arr.astype(np.float32) * scale + shift).astype(np.float32, copy=False)
