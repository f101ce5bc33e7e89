"""uint8 → ImageNet-normalised float input, torch and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg_gui.core.data.normalize import IMAGENET_MEAN, IMAGENET_STD, to_model_input, to_model_input_np


def _reference(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("channels", [1, 3])
def test_values_match_imagenet_normalisation(channels):
    images = torch.randint(0, 256, (2, channels, 9, 7), dtype=torch.uint8)
    out = to_model_input(images)
    assert out.shape == (2, 3, 9, 7) and out.dtype == torch.float32
    assert torch.allclose(out, _reference(images), atol=1e-5)


def test_known_pixel_values():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    out = to_model_input(images)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-5)
        assert out[0, c, 0, 1].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-5)
    # grey input: the three channels differ only by the per-channel constants
    assert not torch.equal(out[0, 0], out[0, 1])


def test_memory_format():
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    out = to_model_input(rgb)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    grey = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    assert to_model_input(grey).is_contiguous()
    cl = to_model_input(grey, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
    assert torch.equal(cl, to_model_input(grey))


def test_rejects_wrong_dtype_or_shape():
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        to_model_input(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


def test_numpy_twin_matches_torch():
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 5, 6), dtype=np.uint8)
    ref = to_model_input(torch.from_numpy(images)).numpy()
    assert np.allclose(to_model_input_np(images), ref, atol=1e-6)
    assert to_model_input_np(images[0, 0]).shape == (1, 3, 5, 6)
    hwc = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    chw = torch.from_numpy(hwc.transpose(2, 0, 1).copy())[None]
    assert np.allclose(to_model_input_np(hwc), to_model_input(chw).numpy(), atol=1e-6)
