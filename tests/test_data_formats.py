"""Dataset layouts, pairing, case grouping and the deterministic split."""

from __future__ import annotations

import pytest

from data_helpers import make_flat_dataset, make_pair, make_split_dataset
from medseg_gui.core.data.formats import (
    DatasetLayoutError,
    case_id,
    detect_layout,
    index_dataset,
    resolve_dataset_path,
)


def test_split_layout_pairs_and_given_split(tmp_path):
    make_split_dataset(tmp_path, n_train=5, n_valid=3)
    idx = index_dataset(tmp_path)
    assert idx.layout == "split"
    assert [p.key for p in idx.train] == [f"train{i}" for i in range(5)]
    assert [p.key for p in idx.valid] == [f"valid{i}" for i in range(3)]
    assert all(p.image.parent.name == "images" and p.mask.parent.name == "masks" for p in idx.pairs)
    assert "given" in idx.split_note or idx.grouping == "given"


def test_split_layout_accepts_val_folder_name(tmp_path):
    make_pair(tmp_path / "train/images", tmp_path / "train/masks", "a")
    make_pair(tmp_path / "val/images", tmp_path / "val/masks", "b")
    idx = index_dataset(tmp_path)
    assert [p.key for p in idx.train] == ["a"] and [p.key for p in idx.valid] == ["b"]


def test_train_only_split_layout_is_split_by_case(tmp_path):
    for c in range(4):
        for s in range(3):
            make_pair(tmp_path / "train/images", tmp_path / "train/masks", f"case{c}_slice{s}", seed=c * 3 + s)
    idx = index_dataset(tmp_path, val_fraction=0.25, seed=1)
    assert idx.valid and idx.train
    assert not {p.case for p in idx.train} & {p.case for p in idx.valid}
    assert "no valid/ folder" in idx.split_note


def test_flat_layout_pairs_with_mask_suffixes_and_reports_unpaired(tmp_path):
    make_pair(tmp_path / "images", tmp_path / "masks", "a", mask_name="a_mask")
    make_pair(tmp_path / "images", tmp_path / "masks", "b", mask_name="b-label")
    make_pair(tmp_path / "images", tmp_path / "masks", "c_img", mask_name="c_seg")
    make_pair(tmp_path / "images", tmp_path / "masks", "d")
    (tmp_path / "masks" / "d.png").rename(tmp_path / "masks" / "zzz.png")  # d loses its mask
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    idx = index_dataset(tmp_path)
    assert idx.layout == "flat"
    keys = sorted(p.key for p in idx.pairs)
    assert keys == ["a", "b", "c"]
    assert [p.name for p in idx.images_without_mask] == ["d.png"]
    assert [p.name for p in idx.masks_without_image] == ["zzz.png"]
    assert [p.name for p in idx.ignored_files] == ["notes.txt"]


def test_flat_layout_subfolders_group_by_folder(tmp_path):
    for patient in ("p1", "p2", "p3"):
        for s in range(3):
            make_pair(tmp_path / "images" / patient, tmp_path / "masks" / patient, f"slice{s}")
    idx = index_dataset(tmp_path, val_fraction=0.34)
    assert idx.grouping == "sub-folder"
    assert {p.case for p in idx.pairs} == {"p1", "p2", "p3"}
    assert not {p.case for p in idx.train} & {p.case for p in idx.valid}
    assert all(p.key.split("/")[0] == p.case for p in idx.pairs)


def test_duplicate_stems_are_reported_not_paired(tmp_path):
    make_pair(tmp_path / "images", tmp_path / "masks", "a")
    make_pair(tmp_path / "images", tmp_path / "masks", "b")
    (tmp_path / "images" / "a.jpg").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    idx = index_dataset(tmp_path)
    assert [p.key for p in idx.pairs] == ["b"]
    assert sorted(p.name for p in idx.duplicates[0]) == ["a.jpg", "a.png"]


@pytest.mark.parametrize("name, expected", [
    ("case123_day20_slice_0001", "case123"),
    ("Patient-07_t2_012", "patient7"),
    ("sub_3_slice9", "sub3"),
    ("img_0001", None),
    ("showcase12_x", None),  # 'case' inside a word is not a case id
    ("p7/slice3", None),
])
def test_case_id_regex(name, expected):
    assert case_id(name) == expected


def test_flat_split_is_deterministic_grouped_and_near_fraction(tmp_path):
    make_flat_dataset(tmp_path, cases=10, slices=4)
    a = index_dataset(tmp_path, val_fraction=0.2, seed=7)
    b = index_dataset(tmp_path, val_fraction=0.2, seed=7)
    assert [p.key for p in a.valid] == [p.key for p in b.valid]
    assert a.grouping == "case id in name"
    assert len(a.valid) == 8 and len(a.train) == 32  # 2 of 10 cases, whole cases
    assert not {p.case for p in a.train} & {p.case for p in a.valid}
    others = {tuple(p.key for p in index_dataset(tmp_path, 0.2, seed=s).valid) for s in range(8)}
    assert len(others) > 1  # the random seed matters


def test_single_case_falls_back_to_file_split(tmp_path):
    make_flat_dataset(tmp_path, cases=1, slices=5)
    idx = index_dataset(tmp_path, val_fraction=0.2)
    assert len(idx.valid) == 1 and len(idx.train) == 4
    assert "only one case" in idx.split_note


def test_tutorial_split_leak_is_detected(tmp_path):
    make_pair(tmp_path / "train/images", tmp_path / "train/masks", "case1_slice1")
    make_pair(tmp_path / "valid/images", tmp_path / "valid/masks", "case1_slice2")
    make_pair(tmp_path / "valid/images", tmp_path / "valid/masks", "case2_slice1")
    assert index_dataset(tmp_path).leaked_cases == ["case1"]


def test_not_a_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        detect_layout(tmp_path / "missing")
    (tmp_path / "train.csv").write_text("id,class,segmentation\n")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError) as err:
        detect_layout(tmp_path)
    assert str(tmp_path) in str(err.value) and "train.csv" in str(err.value)
    assert "--from kaggle" in str(err.value)
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(DatasetLayoutError, match="is a file"):
        detect_layout(f)


def test_demo_path_resolves_to_cached_dataset():
    path = resolve_dataset_path("demo", image_size=64)
    assert (path / "demo.json").exists()
    assert detect_layout(path) == "split"
    assert resolve_dataset_path("demo", image_size=64) == path
