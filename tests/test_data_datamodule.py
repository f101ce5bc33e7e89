"""The DataModule: batch contract, skipping bad pairs, cache, workers, demo resolution."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from data_helpers import make_pair, make_split_dataset
from medseg_gui.core.config import RunConfig
from medseg_gui.core.data.datamodule import DatasetNotReady, build_datamodule


def _config(path, size=32, batch=4, workers=0, **ds):
    c = RunConfig()
    c.dataset.path = str(path)
    c.dataset.image_size = size
    c.training.batch_size = batch
    c.training.num_workers = workers
    c.training.accelerator = "cpu"
    for k, v in ds.items():
        setattr(c.dataset, k, v)
    return c


def test_batches_follow_the_contract(tmp_path):
    make_split_dataset(tmp_path, n_train=10, n_valid=3, size=40)
    dm = build_datamodule(_config(tmp_path, size=32, batch=4))
    assert (dm.train_size, dm.val_size, dm.num_classes, dm.in_channels) == (10, 3, 4, 1)
    train = list(dm.train_dataloader())
    assert len(train) == 2  # drop_last: 10 // 4, every step the same shape
    for images, masks in train:
        assert isinstance((images, masks), tuple)
        assert images.shape == (4, 1, 32, 32) and images.dtype == torch.uint8
        assert masks.shape == (4, 32, 32) and masks.dtype == torch.uint8
        assert int(masks.max()) <= 3
    val = list(dm.val_dataloader())
    assert [v[0].shape[0] for v in val] == [3]  # validation keeps every sample
    loader = dm.train_dataloader()
    assert loader.pin_memory is False and loader.persistent_workers is False
    assert dm.train_dataset is not None and len(dm.val_dataset) == 3  # names the session reads


def test_bad_pairs_are_skipped(tmp_path):
    make_split_dataset(tmp_path, n_train=6, n_valid=2)
    make_pair(tmp_path / "train/images", tmp_path / "train/masks", "broken")
    (tmp_path / "train/images/broken.png").write_bytes(b"garbage")
    dm = build_datamodule(_config(tmp_path, batch=2))
    assert dm.train_size == 6
    assert "broken" not in {p.key for p in dm.train_dataset.pairs}
    assert sum(len(b[0]) for b in dm.train_dataloader()) == 6


def test_dataset_that_cannot_train_raises_with_verdict(tmp_path):
    make_split_dataset(tmp_path, n_train=2, n_valid=1)
    for m in tmp_path.rglob("masks/*.png"):
        m.write_bytes(b"")
    dm = build_datamodule(_config(tmp_path))
    with pytest.raises(DatasetNotReady, match="no usable training pairs"):
        dm.setup("fit")


def test_cache_gives_identical_validation_batches(tmp_path):
    make_split_dataset(tmp_path, n_train=4, n_valid=3, size=48)
    plain = build_datamodule(_config(tmp_path, size=32, batch=3))
    cached = build_datamodule(_config(tmp_path, size=32, batch=3, cache_images=True))
    a = next(iter(plain.val_dataloader()))
    b = next(iter(cached.val_dataloader()))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert cached.train_dataset.cache[0].is_shared()
    assert next(iter(cached.train_dataloader()))[0].shape == (3, 1, 32, 32)


def test_colour_dataset_ships_three_channels(tmp_path):
    make_split_dataset(tmp_path, n_train=4, n_valid=1)
    from PIL import Image

    for p in tmp_path.rglob("images/*.png"):
        rng = np.random.default_rng(len(p.name))
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
    dm = build_datamodule(_config(tmp_path, batch=2))
    images, _ = next(iter(dm.train_dataloader()))
    assert dm.in_channels == 3 and images.shape == (2, 3, 32, 32)


def test_same_seed_same_first_batch(tmp_path):
    make_split_dataset(tmp_path, n_train=8, n_valid=2)
    a = next(iter(build_datamodule(_config(tmp_path)).train_dataloader()))
    b = next(iter(build_datamodule(_config(tmp_path)).train_dataloader()))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.slow
def test_worker_processes_deliver_batches(tmp_path):
    make_split_dataset(tmp_path, n_train=8, n_valid=2)
    dm = build_datamodule(_config(tmp_path, batch=4, workers=1))
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (4, 1, 32, 32)


def test_demo_path_builds_and_class_pickles():
    dm = build_datamodule(_config("demo", size=64, batch=8))
    assert dm.train_size == 192 and dm.val_size == 48
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 1, 64, 64) and set(np.unique(masks.numpy())) <= {0, 1, 2, 3}
    assert pickle.loads(pickle.dumps(type(dm))) is type(dm)
