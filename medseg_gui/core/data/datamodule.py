"""Training and validation data: the Dataset, its loaders and the LightningDataModule.

Contract (docs/ARCHITECTURE.md): batches are ``(images, masks)`` with ``images`` uint8
``[B, C, S, S]`` (C = 1 for grey, 3 for colour datasets) and ``masks`` uint8 ``[B, S, S]`` class
ids. The device turns images into the model's float input (``core.data.normalize``).

Importing this module is cheap (numpy only). Lightning is imported when the DataModule class is first
asked for — ``build_datamodule(config)`` or ``from ...datamodule import SegDataModule`` — through the
module ``__getattr__`` below, so the class is still a normal importable (and picklable) name.

Why the choices:

* grey stays one channel from disk to device (1/3 of the bytes through worker pipes and PCIe);
* ``drop_last`` on training keeps every step's shape static (``torch.compile``/CUDA graphs recompile
  or crash on a short last batch); validation keeps all samples by default (``val_drop_last``);
* ``persistent_workers`` avoids re-forking workers (and re-importing cv2/albumentations) each epoch;
* ``cache_images`` decodes every pair once, resized to the training size (exactly what the first
  augmentation step would produce), into shared memory that all workers read without copies;
* pairs the validation report marks bad are left out, so one truncated file never kills a run.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from medseg_gui.core.config import RunConfig
from medseg_gui.core.data.augment import apply, build_train_transform, build_val_transform
from medseg_gui.core.data.decode import read_image, read_mask
from medseg_gui.core.data.formats import Pair, resolve_dataset_path
from medseg_gui.core.data.validate import validate_dataset

if TYPE_CHECKING:
    from medseg_gui.core.data.validate import ValidationReport


class DatasetNotReady(ValueError):
    """The dataset cannot be trained on; the message carries the validation report's verdict."""


# Workers are spawned, never forked: the GUI process has Qt and training threads, and a process that
# already trained once holds OpenMP/OpenCV thread pools whose locks a fork copies mid-state (a second
# run with workers then hung at its first batch). Spawn costs ~1-2 s of imports per worker, once per
# run (workers persist across epochs), and is what Windows and macOS do anyway.
WORKER_START_METHOD = "spawn"


def _load_pair(pair: Pair, channels: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(pair.image, channels=channels)
    mask = read_mask(pair.mask)
    if mask.ndim == 3:  # grey stored as RGB (the report checked the channels are identical)
        mask = mask[:, :, 0]
    if mask.size and int(mask.max()) >= num_classes:
        raise ValueError(f"{pair.mask}: mask value {int(mask.max())} is outside 0..{num_classes - 1}; "
                         "check the dataset (medseg data check, or the wizard's Check step; its mask check may have been sampled)")
    if mask.dtype != np.uint8:
        mask = mask.astype(np.uint8)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                         f"{image.shape[1]}x{image.shape[0]}")
    return image, mask


class SegDataset:
    """Map-style dataset of (image, mask) pairs → ``(uint8 [C, S, S], uint8 [S, S])`` numpy arrays.

    A plain class (no torch base) so importing it costs nothing; DataLoader only needs
    ``__len__``/``__getitem__``. ``cache`` holds pre-decoded, pre-resized arrays (see
    :func:`decode_cache`).
    """

    def __init__(self, pairs: list[Pair], transform: Any, channels: int, num_classes: int,
                 cache: tuple[Any, Any] | None = None):
        self.pairs = list(pairs)
        self.transform = transform
        self.channels = channels
        self.num_classes = num_classes
        self.cache = cache

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            image, mask = self.cache[0][index].numpy(), self.cache[1][index].numpy()
        else:
            image, mask = _load_pair(self.pairs[index], self.channels, self.num_classes)
        image, mask = apply(self.transform, image, mask)
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def collate_pairs(batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Any, Any]:
    """Stack samples into the contract's ``(uint8 [B, C, S, S], uint8 [B, S, S])`` tuple."""
    import torch

    images = np.stack([b[0] for b in batch])
    masks = np.stack([b[1] for b in batch])
    return torch.from_numpy(images), torch.from_numpy(masks)


def seed_worker(worker_id: int) -> None:
    """Give each worker its own augmentation stream (derived from the loader's seed), and keep OpenCV
    single-threaded inside workers: the workers are the parallelism, nested threads only contend."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    transform = getattr(info.dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(int(info.seed % 2**32))


def decode_cache(pairs: list[Pair], size: int, channels: int, num_classes: int,
                 threads: int | None = None) -> tuple[Any, Any]:
    """Decode every pair once, resized to ``size`` (bilinear image, nearest mask — what the first
    transform step does), into shared-memory uint8 tensors ``[N, S, S(, 3)]`` and ``[N, S, S]``."""
    import cv2
    import torch

    shape = (len(pairs), size, size) if channels == 1 else (len(pairs), size, size, 3)
    images = torch.empty(shape, dtype=torch.uint8).share_memory_()
    masks = torch.empty((len(pairs), size, size), dtype=torch.uint8).share_memory_()
    img_np, msk_np = images.numpy(), masks.numpy()

    def fill(i: int) -> None:
        image, mask = _load_pair(pairs[i], channels, num_classes)
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        img_np[i] = image
        msk_np[i] = mask

    with ThreadPoolExecutor(threads or min(8, 2 * (os.cpu_count() or 1))) as pool:
        list(pool.map(fill, range(len(pairs))))
    return images, masks


def _build_class() -> type:
    """Define the LightningDataModule subclass (needs lightning, so only on first use)."""
    import lightning as L

    class SegDataModule(L.LightningDataModule):
        """Train/valid loaders for a :class:`RunConfig` (``dataset`` + ``training`` sections).

        ``report``: a validation report already made for this dataset (the GUI has one); otherwise
        the dataset is checked on first use. Raises :class:`DatasetNotReady` when the report says
        training cannot go ahead. ``val_drop_last``: drop the short last validation batch too
        (fully static shapes for CUDA graphs, at the cost of a few validation samples).
        """

        def __init__(self, config: RunConfig, report: "ValidationReport | None" = None, *,
                     val_drop_last: bool = False, pin_memory: bool | None = None):
            super().__init__()
            self.config = config
            self.report = report
            self.val_drop_last = val_drop_last
            self._pin_memory = pin_memory
            self.train_dataset: SegDataset | None = None
            self.val_dataset: SegDataset | None = None

        # ---- preparation (idempotent; safe to call from properties before the Trainer does) ----
        def prepare(self) -> None:
            if self.train_dataset is not None:
                return
            ds, tr = self.config.dataset, self.config.training
            if self.report is None:
                root = resolve_dataset_path(ds.path, ds.image_size)
                self.report = validate_dataset(root, ds.num_classes, class_names=ds.class_names,
                                               val_fraction=ds.val_fraction, seed=tr.seed)
            if not self.report.can_train:
                raise DatasetNotReady(f"{self.report.root}: {self.report.verdict}. "
                                      "Check it (medseg data check, or the wizard's Check step) for the full report.")
            channels = self.report.image_channels
            train_pairs = self.report.usable_pairs("train")
            val_pairs = self.report.usable_pairs("valid")
            train_cache = val_cache = None
            if ds.cache_images:
                train_cache = decode_cache(train_pairs, ds.image_size, channels, ds.num_classes)
                val_cache = decode_cache(val_pairs, ds.image_size, channels, ds.num_classes)
            self.train_dataset = SegDataset(train_pairs, build_train_transform(ds, seed=tr.seed), channels,
                                            ds.num_classes, train_cache)
            self.val_dataset = SegDataset(val_pairs, build_val_transform(ds), channels, ds.num_classes, val_cache)

        def setup(self, stage: str | None = None) -> None:
            self.prepare()

        # ---- what the engine and the GUI read ----
        @property
        def train_size(self) -> int:
            self.prepare()
            return len(self.train_dataset)

        @property
        def val_size(self) -> int:
            self.prepare()
            return len(self.val_dataset)

        @property
        def num_classes(self) -> int:
            return self.config.dataset.num_classes

        @property
        def in_channels(self) -> int:
            """1 (grey) or 3 (colour): the C of the batches."""
            self.prepare()
            return self.report.image_channels

        # ---- loaders ----
        def _loader(self, dataset: SegDataset, train: bool) -> Any:
            import torch
            from torch.utils.data import DataLoader

            tr = self.config.training
            workers = tr.num_workers
            pin = self._pin_memory
            if pin is None:
                pin = tr.accelerator != "cpu" and torch.cuda.is_available()
            batch = tr.batch_size
            # drop_last needs at least one full batch; a tiny dataset keeps its one short batch.
            drop_last = (train or self.val_drop_last) and len(dataset) >= batch
            generator = torch.Generator()
            generator.manual_seed(tr.seed + (0 if train else 1))
            return DataLoader(
                dataset, batch_size=batch, shuffle=train, drop_last=drop_last, num_workers=workers,
                pin_memory=pin, persistent_workers=workers > 0, collate_fn=collate_pairs,
                worker_init_fn=seed_worker, generator=generator,
                prefetch_factor=4 if workers > 0 else None,
                multiprocessing_context=WORKER_START_METHOD if workers > 0 else None)

        def train_dataloader(self) -> Any:
            self.prepare()
            return self._loader(self.train_dataset, train=True)

        def val_dataloader(self) -> Any:
            self.prepare()
            return self._loader(self.val_dataset, train=False)

    SegDataModule.__module__ = __name__
    SegDataModule.__qualname__ = "SegDataModule"
    return SegDataModule


def __getattr__(name: str) -> Any:
    if name == "SegDataModule":
        cls = _build_class()
        globals()["SegDataModule"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_datamodule(config: RunConfig, report: "ValidationReport | None" = None, **kwargs: Any) -> Any:
    """The LightningDataModule for ``config`` (see ``SegDataModule``)."""
    cls = globals().get("SegDataModule") or __getattr__("SegDataModule")
    return cls(config, report, **kwargs)
