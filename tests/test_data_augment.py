"""Training/validation transforms: shapes, dtypes, class ids preserved, switches, no warnings."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from medseg_gui.core.config import DatasetConfig
from medseg_gui.core.data.augment import apply, build_train_transform, build_val_transform


def _sample(h=50, w=70):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[5:25, 5:30] = 1
    mask[30:45, 10:60] = 2
    mask[10:20, 40:65] = 3
    return image, mask


@pytest.mark.parametrize("flags", [
    {},
    {"augment_flip": False, "augment_shift_scale_rotate": False, "augment_brightness_contrast": False,
     "augment_coarse_dropout": False},
])
def test_train_transform_shapes_dtypes_and_class_ids(flags):
    ds = DatasetConfig(image_size=64, **flags)
    t = build_train_transform(ds, seed=3)
    image, mask = _sample()
    for _ in range(30):
        img, msk = apply(t, image, mask)
        assert img.shape == (64, 64) and img.dtype == np.uint8
        assert msk.shape == (64, 64) and msk.dtype == np.uint8
        assert set(np.unique(msk)) <= {0, 1, 2, 3}  # nearest neighbour: no blended ids


def test_colour_images_keep_three_channels():
    image, mask = _sample()
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    img, msk = apply(build_train_transform(DatasetConfig(image_size=48), seed=0), rgb, mask)
    assert img.shape == (48, 48, 3) and msk.shape == (48, 48)


def test_switches_select_the_steps():
    names = lambda ds: [type(t).__name__ for t in build_train_transform(ds).transforms]  # noqa: E731
    assert names(DatasetConfig()) == ["Resize", "HorizontalFlip", "VerticalFlip", "Affine",
                                      "RandomBrightnessContrast", "CoarseDropout"]
    assert names(DatasetConfig(augment_flip=False, augment_coarse_dropout=False)) == [
        "Resize", "Affine", "RandomBrightnessContrast"]
    assert [type(t).__name__ for t in build_val_transform(DatasetConfig()).transforms] == ["Resize"]


def test_all_off_equals_validation_transform():
    ds = DatasetConfig(image_size=40, augment_flip=False, augment_shift_scale_rotate=False,
                       augment_brightness_contrast=False, augment_coarse_dropout=False)
    image, mask = _sample()
    a = apply(build_train_transform(ds, seed=1), image, mask)
    b = apply(build_val_transform(ds), image, mask)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_training_augmentation_actually_changes_samples():
    ds = DatasetConfig(image_size=50)
    t = build_train_transform(ds, seed=5)
    image, mask = _sample(50, 50)
    outs = {apply(t, image, mask)[1].tobytes() for _ in range(10)}
    assert len(outs) > 3


def test_seeded_transform_is_reproducible():
    image, mask = _sample()
    ds = DatasetConfig(image_size=64)
    t1, t2 = build_train_transform(ds, seed=9), build_train_transform(ds, seed=9)
    for _ in range(5):
        assert np.array_equal(apply(t1, image, mask)[0], apply(t2, image, mask)[0])


def test_no_warnings_on_import_and_use():
    """Fresh interpreter with every warning as an error: import, build and run both transforms."""
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import numpy as np
        from medseg_gui.core.config import DatasetConfig
        from medseg_gui.core.data.augment import apply, build_train_transform, build_val_transform
        ds = DatasetConfig(image_size=64)
        img = np.zeros((80, 80), np.uint8); msk = np.zeros((80, 80), np.uint8)
        for _ in range(20):
            apply(build_train_transform(ds, seed=1), img, msk)
        apply(build_val_transform(ds), img, msk)
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean" and "Warning" not in out.stderr
