"""Shared set-up for the Training-tab tests and the UI-latency benchmark: tiny demo data + tiny model config."""

from __future__ import annotations

from pathlib import Path

from medseg_gui.core import config as cfg
TINY_ARCH = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 48], "num_attention_heads": [1, 1, 2, 2],
             "decoder_hidden_size": 32}


def tiny_model_dir(root: Path, num_classes: int = 4) -> Path:
    """A b0-shaped SegFormer with small widths saved as an HF folder (the 'local folder' weights source)."""
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.engine.model import scratch_config

    folder = root / f"tiny-segformer-{num_classes}"
    if not (folder / "config.json").exists():
        import torch

        torch.manual_seed(0)
        SegformerForSemanticSegmentation(scratch_config("b0", num_classes, **TINY_ARCH)).save_pretrained(folder)
    return folder


def demo_run_config(root: Path, *, n: int = 16, size: int = 64, epochs: int = 2, steps_per_epoch: int = 2,
                    batch_size: int = 2) -> cfg.RunConfig:
    """The demo generator's 4-class data (tiny) and a tiny b0 on the CPU, writing runs under ``root/runs``."""
    from medseg_gui.core.data.demo import CLASS_NAMES, generate_demo

    data = root / "demo-data"
    if not data.exists():
        generate_demo(data, n=n, size=size, seed=0)
    config = cfg.RunConfig()
    cfg.set_num_classes(config, 4, list(CLASS_NAMES))
    ds, tr = config.dataset, config.training
    ds.path = str(data)
    ds.image_size = size
    tr.variant = "b0"
    tr.pretrained = str(tiny_model_dir(root))
    tr.batch_size = batch_size
    tr.epochs = epochs
    tr.max_steps_per_epoch = steps_per_epoch
    tr.lr = 3e-3
    tr.num_workers = 0
    tr.precision = "32"
    tr.accelerator = "cpu"
    tr.compile = "off"
    tr.output_dir = str(root / "runs")
    return config
