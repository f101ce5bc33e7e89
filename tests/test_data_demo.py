"""The built-in demo dataset: layout, determinism, speed, and that intensity alone cannot segment it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from medseg_gui.core.data.demo import CLASS_NAMES, demo_dataset, generate_demo
from medseg_gui.core.data.formats import index_dataset


def _load(root):
    files = sorted(root.glob("*/images/*.png"))
    images = np.stack([np.asarray(Image.open(f)) for f in files])
    masks = np.stack([np.asarray(Image.open(str(f).replace("/images/", "/masks/"))) for f in files])
    return images, masks


def test_layout_counts_and_classes(tmp_path):
    root = generate_demo(tmp_path / "demo", n=40, size=64, seed=0)
    idx = index_dataset(root)
    assert idx.layout == "split" and len(idx.train) == 32 and len(idx.valid) == 8
    assert not {p.case for p in idx.train} & {p.case for p in idx.valid}  # whole cases per split
    assert idx.train[0].image.name.startswith("case") and "_slice" in idx.train[0].image.name
    images, masks = _load(root)
    assert images.dtype == np.uint8 and images.shape == (40, 64, 64)
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1, 2, 3}
    with Image.open(idx.train[0].image) as im:
        assert im.mode == "L"
    share = np.bincount(masks.ravel(), minlength=4) / masks.size
    assert all(share[1:] > 0.02), share  # organs big enough to learn at low resolution
    assert (root / "demo.json").read_text().count(CLASS_NAMES[2]) == 1


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_demo(tmp_path / "a", n=6, size=48, seed=3)
    b = generate_demo(tmp_path / "b", n=6, size=48, seed=3)
    c = generate_demo(tmp_path / "c", n=6, size=48, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_generation_is_fast(tmp_path):
    start = time.process_time()  # CPU time: other work on a shared machine does not inflate it
    generate_demo(tmp_path / "d", n=80, size=128)
    assert time.process_time() - start < 10


def test_intensity_alone_cannot_segment_it(tmp_path):
    """Best single intensity window per organ (an oracle threshold classifier) stays far from Dice 0.8."""
    images, masks = _load(generate_demo(tmp_path / "d", n=48, size=96, seed=1))
    hist = np.zeros((256, 4))
    np.add.at(hist, (images.ravel(), masks.ravel()), 1)
    cum_all = np.concatenate([[0], np.cumsum(hist.sum(1))])
    for c in (1, 2, 3):
        cum_c = np.concatenate([[0], np.cumsum(hist[:, c])])
        tp = cum_c[None, :] - cum_c[:, None]  # pixels of class c with lo <= value < hi
        predicted = cum_all[None, :] - cum_all[:, None]
        dice = np.where(predicted > 0, 2 * tp / (predicted + hist[:, c].sum()), 0)
        assert dice.max() < 0.6, (CLASS_NAMES[c], dice.max())


def test_refuses_non_empty_destination_and_bad_arguments(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate_demo(tmp_path / "x", n=4, size=32)
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="at least 2"):
        generate_demo(tmp_path / "y", n=1)
    with pytest.raises(ValueError, match="size"):
        generate_demo(tmp_path / "y", n=4, size=8)
    assert not list(tmp_path.glob(".y*"))  # no staging folder left behind
    generate_demo(tmp_path / "empty_ok", n=2, size=32)  # an empty folder is fine (created here)


def test_cached_demo_is_generated_once(monkeypatch):
    first = demo_dataset(size=48, n=10)
    stamp = (first / "demo.json").stat().st_mtime_ns
    import medseg_gui.core.data.demo as demo

    monkeypatch.setattr(demo, "generate_demo", lambda *a, **k: pytest.fail("regenerated"))
    assert demo_dataset(size=48, n=10) == first
    assert (first / "demo.json").stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no staging left
