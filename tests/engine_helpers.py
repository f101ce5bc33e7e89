"""Shared pieces for the training-engine tests: a tiny SegFormer folder and a small synthetic DataModule.

The fake DataModule yields the data layer's batch contract (uint8 images [B, C, S, S], uint8 masks
[B, S, S]) so the engine can be tested apart from the real loaders; test_engine_cli uses the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg_gui.core import config as cfg
TINY_ARCH = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 48], "num_attention_heads": [1, 1, 2, 2],
             "decoder_hidden_size": 32}


def tiny_model_dir(root: Path, num_classes: int = 3) -> Path:
    """A b0-shaped SegFormer with small widths, saved as an HF folder (the 'local folder' source)."""
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.engine.model import scratch_config

    folder = root / "tiny-segformer"
    if not (folder / "config.json").exists():
        import torch

        torch.manual_seed(0)
        SegformerForSemanticSegmentation(scratch_config("b0", num_classes, **TINY_ARCH)).save_pretrained(folder)
    return folder


def synthetic_arrays(n: int, size: int = 64, channels: int = 1, seed: int = 0):
    """Grey images with a bright disk (class 1) and a mid-grey square (class 2) on noise."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, size, size), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = rng.normal(40, 10, (size, size))
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 10, size // 5))]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        sy, sx = rng.integers(0, size - size // 4, 2)
        side = size // 5
        square = np.zeros_like(disk)
        square[sy:sy + side, sx:sx + side] = True
        square &= ~disk
        img[disk] = 220
        img[square] = 130
        masks[i][disk] = 1
        masks[i][square] = 2
        images[i] = np.clip(img, 0, 255).astype(np.uint8)[None].repeat(channels, 0)
    return images, masks


class FakeDataModule:
    """Factory for a LightningDataModule over synthetic arrays (built lazily: lightning import)."""

    def __init__(self, n_train: int = 24, n_val: int = 8, size: int = 64):
        self.n_train, self.n_val, self.size = n_train, n_val, size
        self.built: list = []

    def __call__(self, config: cfg.RunConfig):
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        ti, tm = synthetic_arrays(self.n_train, self.size, seed=1)
        vi, vm = synthetic_arrays(self.n_val, self.size, seed=2)
        batch = config.training.batch_size

        class DM(L.LightningDataModule):
            def setup(self, stage=None):
                self.train_dataset = TensorDataset(torch.from_numpy(ti), torch.from_numpy(tm))
                self.val_dataset = TensorDataset(torch.from_numpy(vi), torch.from_numpy(vm))

            def train_dataloader(self):
                return DataLoader(self.train_dataset, batch_size=batch, shuffle=True, drop_last=True)

            def val_dataloader(self):
                return DataLoader(self.val_dataset, batch_size=batch)

        dm = DM()
        self.built.append(batch)
        return dm


def tiny_config(tmp_path: Path, **training) -> cfg.RunConfig:
    config = cfg.RunConfig()
    cfg.set_num_classes(config, 3, ["background", "disk", "square"])
    config.dataset.image_size = 64
    tr = config.training
    tr.variant = "b0"
    tr.pretrained = str(tiny_model_dir(tmp_path))
    tr.batch_size = 4
    tr.epochs = 2
    tr.lr = 3e-3
    tr.num_workers = 0
    tr.precision = "auto"
    tr.accelerator = "cpu"
    tr.compile = "off"
    tr.output_dir = str(tmp_path / "runs")
    for key, value in training.items():
        setattr(tr, key, value)
    return config
