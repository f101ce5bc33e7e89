"""The validation report: every bad-input case names the file and the problem; the source is untouched."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from data_helpers import make_pair, make_split_dataset, tree_digest, write_png
from medseg_gui.core.data.validate import summary_for_recommendation, validate_dataset


def _problem(report, kind):
    found = [p for p in report.problems if p.kind == kind]
    assert found, f"no {kind} problem in {report.problems}"
    return found


def test_clean_dataset_report(tmp_path):
    make_split_dataset(tmp_path, n_train=6, n_valid=2, size=32)
    r = validate_dataset(tmp_path, 4, class_names=["bg", "a", "b", "c"])
    assert r.can_train and not r.problems
    assert r.pairs_found == {"train": 6, "valid": 2} and r.pairs_usable == r.pairs_found
    assert r.image_sizes == {"32x32": 8} and r.image_modes == {"L": 8} and r.image_channels == 1
    assert r.class_masks == [8, 8, 8, 8]
    from PIL import Image

    expected = sum(np.bincount(np.asarray(Image.open(m)).ravel(), minlength=4)
                   for m in sorted(tmp_path.rglob("masks/*.png")))
    assert r.class_pixels == [int(v) for v in expected]
    assert sum(r.class_pixels) == 8 * 32 * 32
    assert abs(sum(r.class_share) - 1.0) < 1e-9
    text = r.to_text()
    assert "train 6 (6 usable)" in text and "OK: training can go ahead" in text and " a " in text
    json.dumps(r.to_dict())  # JSON-serialisable


@pytest.fixture
def bad_dataset(tmp_path):
    """A split dataset with one of every bad case, plus enough good pairs to go ahead."""
    root = tmp_path / "ds"
    make_split_dataset(root, n_train=12, n_valid=3)
    ti, tm = root / "train/images", root / "train/masks"
    make_pair(ti, tm, "nomask")
    (tm / "nomask.png").unlink()
    make_pair(ti, tm, "noimage")
    (ti / "noimage.png").unlink()
    make_pair(ti, tm, "junk")
    (ti / "junk.png").write_bytes(b"this is not a png")
    make_pair(ti, tm, "trunc")
    data = (ti / "trunc.png").read_bytes()
    (ti / "trunc.png").write_bytes(data[: len(data) // 2])
    make_pair(ti, tm, "truncmask")
    data = (tm / "truncmask.png").read_bytes()
    (tm / "truncmask.png").write_bytes(data[: len(data) // 2])
    make_pair(ti, tm, "empty")
    (ti / "empty.png").write_bytes(b"")
    make_pair(ti, tm, "mismatch")
    write_png(tm / "mismatch.png", np.zeros((16, 16), np.uint8))
    make_pair(ti, tm, "values")
    write_png(tm / "values.png", (np.arange(32 * 32).reshape(32, 32) % 2 * 255).astype(np.uint8))
    make_pair(ti, tm, "rgbmask")
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    write_png(tm / "rgbmask.png", rgb)
    make_pair(ti, tm, "greyrgb")  # grey stored as RGB: accepted with a warning
    m = np.zeros((32, 32), np.uint8)
    m[4:10, 4:10] = 2
    write_png(tm / "greyrgb.png", np.repeat(m[:, :, None], 3, axis=2))
    return root


def test_every_bad_case_names_file_and_problem(bad_dataset):
    before = tree_digest(bad_dataset)
    r = validate_dataset(bad_dataset, 4)
    assert tree_digest(bad_dataset) == before  # never changes the source

    def one(kind, path):
        hits = [p for p in _problem(r, kind) if p.path == path]
        assert hits, f"{kind} should name {path}: {r.problems}"
        return hits[0].message

    assert "no mask" in one("missing_mask", "train/images/nomask.png")
    assert "no image" in one("missing_image", "train/masks/noimage.png")
    assert "not an image" in one("unreadable", "train/images/junk.png")
    assert "truncated" in one("truncated", "train/images/trunc.png")
    assert "re-export" in one("truncated", "train/masks/truncmask.png")
    assert "empty" in one("empty", "train/images/empty.png")
    assert "16x16" in one("size_mismatch", "train/masks/mismatch.png")
    msg = one("mask_values", "train/masks/values.png")
    assert "255" in msg and "0..3" in msg and "0/255" in msg
    assert "RGB" in one("rgb_mask", "train/masks/rgbmask.png")
    assert r.can_train  # 13 good pairs of 21: skipping the bad ones is fine
    assert sorted(r.bad_keys["train"]) == ["empty", "junk", "mismatch", "rgbmask", "trunc", "truncmask", "values"]
    assert "greyrgb" not in r.bad_keys["train"]
    assert any("RGB with identical channels" in w for w in r.warnings)
    usable = {p.key for p in r.usable_pairs("train")}
    assert "greyrgb" in usable and "junk" not in usable
    assert r.pairs_usable["train"] == 13 - 0 and r.pairs_found["train"] == 20
    text = r.to_text()
    for name in ("junk.png", "trunc.png", "values.png", "rgbmask.png", "nomask.png"):
        assert name in text
    assert "7 bad pair(s) will be skipped" in r.verdict


def test_cannot_train_when_most_pairs_bad(tmp_path):
    make_split_dataset(tmp_path, n_train=4, n_valid=2)
    for mask in (tmp_path / "train/masks").glob("*.png"):
        write_png(mask, np.full((32, 32), 255, np.uint8))
    r = validate_dataset(tmp_path, 4)
    assert not r.can_train
    assert "systematic" in r.verdict and "mask_values" in r.verdict
    assert "CANNOT TRAIN" in r.to_text()


def test_cannot_train_without_validation_pairs(tmp_path):
    make_split_dataset(tmp_path, n_train=3, n_valid=1)
    (tmp_path / "valid/images/valid0.png").write_bytes(b"")
    r = validate_dataset(tmp_path, 4)
    assert not r.can_train and "no usable validation pairs" in r.verdict


def test_background_only_masks_cannot_train(tmp_path):
    make_split_dataset(tmp_path, n_train=3, n_valid=1)
    for mask in tmp_path.rglob("masks/*.png"):
        write_png(mask, np.zeros((32, 32), np.uint8))
    r = validate_dataset(tmp_path, 4)
    assert not r.can_train and "background only" in r.verdict


def test_mask_sampling_is_reported(tmp_path):
    make_split_dataset(tmp_path, n_train=8, n_valid=2)
    r = validate_dataset(tmp_path, 4, mask_sample=3)
    assert r.mask_values_sampled and r.masks_checked == 3 and r.masks_total == 10
    assert "3 of 10 masks decoded (random sample)" in r.to_text()


def test_16bit_and_rgb_images_are_noted(tmp_path):
    make_split_dataset(tmp_path, n_train=3, n_valid=1)
    write_png(tmp_path / "train/images/train0.png", (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16))
    r = validate_dataset(tmp_path, 4)
    assert r.can_train and any("16-bit" in w for w in r.warnings)
    grey = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    write_png(tmp_path / "train/images/train1.png", np.repeat(grey[:, :, None], 3, axis=2))
    assert validate_dataset(tmp_path, 4).image_channels == 1  # grey stored as RGB stays one channel
    colour = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_png(tmp_path / "train/images/train2.png", colour)
    assert validate_dataset(tmp_path, 4).image_channels == 3


def test_summary_for_recommendation_reads_classes_and_size(tmp_path):
    make_split_dataset(tmp_path, n_train=4, n_valid=1, size=48)
    summary, problem = summary_for_recommendation(str(tmp_path))
    assert problem is None
    assert summary.num_classes == 4 and summary.image_size == 48 and summary.train_images == 4
    summary, problem = summary_for_recommendation(str(tmp_path / "missing"))
    assert summary is None and "does not exist" in problem


@pytest.mark.slow
def test_validation_is_fast_on_thousands_of_files(tmp_path):
    """3 000 pairs (6 000 files) of 64 px: headers + full mask decode in well under the budget."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    mask = (rng.random((64, 64)) * 4).astype(np.uint8)
    from PIL import Image
    import io

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    ib, mb = png(img), png(mask)
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i in range(3000):
        (tmp_path / "images" / f"case{i // 30}_slice{i % 30}.png").write_bytes(ib)
        (tmp_path / "masks" / f"case{i // 30}_slice{i % 30}.png").write_bytes(mb)
    cpu = time.process_time()  # CPU time (all threads): a busy machine does not inflate it
    r = validate_dataset(tmp_path, 4)
    cpu = time.process_time() - cpu
    assert r.can_train and r.masks_checked == 3000
    assert cpu < 20, cpu
