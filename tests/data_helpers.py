"""Small dataset fixtures for the data-layer tests (written into tmp_path, a few px each)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def make_pair(images: Path, masks: Path, name: str, size: int = 32, seed: int = 0, num_classes: int = 4,
              mask_name: str | None = None) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    for c in range(1, num_classes):  # one square per class so every class is present
        y, x = rng.integers(0, size - 6, 2)
        mask[y:y + 6, x:x + 6] = c
    return (write_png(images / f"{name}.png", image),
            write_png(masks / f"{mask_name or name}.png", mask))


def make_split_dataset(root: Path, n_train: int = 6, n_valid: int = 2, size: int = 32) -> Path:
    for split, n in (("train", n_train), ("valid", n_valid)):
        for i in range(n):
            make_pair(root / split / "images", root / split / "masks", f"{split}{i}", size, seed=i)
    return root


def make_flat_dataset(root: Path, cases: int = 5, slices: int = 4, size: int = 32) -> Path:
    for c in range(cases):
        for s in range(slices):
            make_pair(root / "images", root / "masks", f"case{c + 1}_day{s % 2}_slice_{s:04d}", size, seed=c * 10 + s)
    return root


def tree_digest(root: Path) -> str:
    """Hash of every file's path, bytes and mtime: proves a check left the folder untouched."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()
