"""Shared pieces for the viewer/inference/predict tests: a tiny 4-class bundle and small inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg_gui.core import config as cfg
TINY_ARCH = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 48], "num_attention_heads": [1, 1, 2, 2],
             "decoder_hidden_size": 32}
CLASS_NAMES = ["background", "stomach", "small_bowel", "large_bowel"]


def tiny_run_config(num_classes: int = 4, size: int = 64) -> cfg.RunConfig:
    config = cfg.RunConfig()
    names = CLASS_NAMES if num_classes == 4 else ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    cfg.set_num_classes(config, num_classes, names)
    config.dataset.image_size = size
    config.training.variant = "b0"
    return config


def tiny_model(num_classes: int = 4, seed: int = 0):
    """A b0-shaped SegFormer with tiny widths and a bias towards predicting every class somewhere."""
    import torch
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.engine.model import scratch_config

    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(scratch_config("b0", num_classes, **TINY_ARCH)).eval()
    with torch.no_grad():  # random heads give near-uniform probabilities; make the classes distinct
        model.decode_head.classifier.weight.mul_(40.0)
    return model


def tiny_bundle(root: Path, num_classes: int = 4, size: int = 64, name: str = "bundle") -> Path:
    """Save a tiny model as a real bundle (save_bundle) under ``root/name``; reused if present."""
    from medseg_gui.core.engine.bundle import save_bundle

    dst = root / name
    if not (dst / "medseg.json").is_file():
        save_bundle(tiny_model(num_classes), tiny_run_config(num_classes, size), dst)
    return dst


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def ramp_image(h: int = 80, w: int = 96, dtype=np.uint8, rgb: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    top = 255 if dtype == np.uint8 else 4000
    img = ((xx + yy) / (h + w - 2) * top).astype(dtype)
    return np.stack([img, img[::-1], img[:, ::-1]], axis=-1) if rgb else img
