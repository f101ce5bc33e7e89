"""Importers: Kaggle csv+RLE, NIfTI pairs, DICOM series+SEG, flat folders, and the CLI.

Every fixture is built in tmp_path (the RLE is encoded here) or taken from the files pydicom and
nibabel ship; outputs are checked pixel for pixel and the source tree is hashed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dicom_fixtures import make_ct_series, make_seg
from medseg_gui.core.data.import_output import DatasetImportError
from medseg_gui.core.data.kaggle import RLEError, import_kaggle, rle_decode, rle_encode
from medseg_gui.core.imaging.window import to_uint8


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def outputs(dst: Path) -> dict[str, tuple[str, Path, Path]]:
    found = {}
    for split in ("train", "valid"):
        for img in sorted((dst / split / "images").glob("*.png")):
            found[img.stem] = (split, img, dst / split / "masks" / img.name)
    return found


# -------------------------------------------------------------------------------------------- RLE

def test_rle_is_one_based_row_major():
    mask = np.array([[0, 1, 1], [1, 0, 0]], bool)
    assert rle_encode(mask) == "2 3"
    assert np.array_equal(rle_decode("2 3", (2, 3)), mask)
    assert np.array_equal(rle_decode("1 1 6 1", (2, 3)), np.array([[1, 0, 0], [0, 0, 1]], bool))
    assert not rle_decode("", (4, 5)).any() and not rle_decode(None, (4, 5)).any()


def test_rle_roundtrip_random_non_square():
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((13, 29)) > 0.6
        assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


@pytest.mark.parametrize("rle, problem", [("1", "odd number"), ("0 3", "below 1"), ("5 x", "not an integer"),
                                          ("11 3", "past the"), ("3 -1", "negative")])
def test_rle_errors(rle, problem):
    with pytest.raises(RLEError, match=problem):
        rle_decode(rle, (3, 4))


# ----------------------------------------------------------------------------------------- Kaggle

CLASSES = ("stomach", "small_bowel", "large_bowel")


def make_kaggle(root: Path, cases=(1, 2, 3, 4), days=(0, 5), n_slices=2, width=40, height=32, seed=0):
    """A miniature competition folder; returns {id: (raw uint16 slice, expected class-id mask)}."""
    rng = np.random.default_rng(seed)
    rows = ["id,class,segmentation"]
    expected = {}
    for case in cases:
        for day in days:
            scans = root / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
            scans.mkdir(parents=True)
            for s in range(1, n_slices + 1):
                sid = f"case{case}_day{day}_slice_{s:04d}"
                raw = rng.integers(0, 3000, (height, width)).astype(np.uint16)
                Image.fromarray(raw).save(scans / f"slice_{s:04d}_{width}_{height}_1.50_1.50.png")
                mask = np.zeros((height, width), np.uint8)
                order = list(CLASSES)
                rng.shuffle(order)  # csv row order must not decide overlaps
                for cls in order:
                    m = np.zeros((height, width), bool)
                    y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
                    m[y:y + 12, x:x + 14] = True
                    if cls == "small_bowel" and s == 2:
                        m[:] = False  # an empty organ: empty RLE cell
                    rows.append(f"{sid},{cls},{rle_encode(m)}")
                for k, cls in enumerate(CLASSES, start=1):  # expected: later class wins
                    rle = [r for r in rows if r.startswith(f"{sid},{cls},")][0].split(",")[2]
                    mask[rle_decode(rle, (height, width))] = k
                expected[sid] = (raw, mask)
    rows.append("case9_day1_slice_0001,stomach,")  # listed, but no slice file
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return expected


def test_kaggle_import_pixel_for_pixel_split_by_case_source_untouched(tmp_path):
    src = tmp_path / "kaggle"
    expected = make_kaggle(src)
    before = tree_hash(src)
    calls = []
    summary = import_kaggle(src, tmp_path / "out", val_fraction=0.25, seed=7,
                            progress=lambda d, t: calls.append((d, t)))
    assert tree_hash(src) == before
    found = outputs(tmp_path / "out")
    assert set(found) == set(expected)
    for sid, (split, img, msk) in found.items():
        raw, mask = expected[sid]
        assert np.array_equal(read_png(msk), mask), sid
        assert np.array_equal(read_png(img), to_uint8(raw)), sid
    cases = {split: {sid.split("_")[0] for sid, (s, _, _) in found.items() if s == split}
             for split in ("train", "valid")}
    assert cases["train"] and cases["valid"] and not cases["train"] & cases["valid"]
    assert summary.n_train + summary.n_valid == len(expected) == len(calls)
    assert calls[-1] == (len(expected), len(expected))
    assert any("case9_day1_slice_0001" in s and "no slice file" in s for s in summary.skipped)
    assert set(summary.class_pixels) == {"background", "stomach", "small_bowel", "large_bowel"}
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["n_train"] == summary.n_train
    # deterministic: the same seed gives the same split
    again = import_kaggle(src, tmp_path / "out2", val_fraction=0.25, seed=7)
    assert again.cases_valid == summary.cases_valid
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_kaggle_missing_csv_and_bad_columns(tmp_path):
    src = tmp_path / "k"
    (src / "train").mkdir(parents=True)
    with pytest.raises(DatasetImportError, match=r"train\.csv.*not found"):
        import_kaggle(src, tmp_path / "out")
    (src / "train.csv").write_text("image,label,rle\na,b,c\n")
    with pytest.raises(DatasetImportError, match=r"train\.csv: missing column\(s\) id, class, segmentation"):
        import_kaggle(src, tmp_path / "out")
    (src / "train.csv").write_text("id,class,segmentation\ncase1_day1_slice_0001,liver,1 2\n")
    with pytest.raises(DatasetImportError, match=r"line 2: unknown class 'liver'"):
        import_kaggle(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_kaggle_rle_out_of_range_names_the_id_and_leaves_nothing(tmp_path):
    src = tmp_path / "k"
    make_kaggle(src, cases=(1, 2), days=(0,), n_slices=1)
    csv = src / "train.csv"
    csv.write_text(csv.read_text() + "case2_day0_slice_0001,stomach,1270 20\n")  # 40x32 = 1280 pixels
    with pytest.raises(DatasetImportError, match=r"case2_day0_slice_0001.*stomach.*past the 32x40 slice"):
        import_kaggle(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_import_refuses_destination_inside_source_or_not_empty(tmp_path):
    src = tmp_path / "k"
    make_kaggle(src, cases=(1,), days=(0,), n_slices=1)
    with pytest.raises(DatasetImportError, match="inside the source"):
        import_kaggle(src, src / "converted")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(DatasetImportError, match=r"full: already exists and is not empty"):
        import_kaggle(src, tmp_path / "full")


# ------------------------------------------------------------------------------------------ NIfTI

def _save_nifti(path: Path, data: np.ndarray, affine=None):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine), str(path))


def test_nifti_nnunet_layout_pixel_for_pixel(tmp_path):
    from medseg_gui.core.data.volume_import import import_volumes
    from medseg_gui.core.imaging.window import percentile_window

    src = tmp_path / "Task01"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    truth = {}
    for name in ("la_003", "la_007", "la_011"):
        img = rng.normal(100, 30, (20, 16, 5)).astype(np.float32)  # (x, y, z), RAS diagonal affine
        lab = np.zeros((20, 16, 5), np.uint8)
        lab[3:9, 2:7, 1] = 1
        lab[10:15, 8:12, 3] = 2
        _save_nifti(src / "imagesTr" / f"{name}_0000.nii.gz", img)
        _save_nifti(src / "imagesTr" / f"{name}_0001.nii.gz", img * 2)  # second channel: ignored
        _save_nifti(src / "labelsTr" / f"{name}.nii.gz", lab)
        truth[name] = (img, lab)
    before = tree_hash(src)
    summary = import_volumes(src, tmp_path / "out", kind="nifti", val_fraction=0.34, seed=3, num_classes=3)
    assert tree_hash(src) == before
    found = outputs(tmp_path / "out")
    assert len(found) == 15 and summary.n_train + summary.n_valid == 15
    for name, (img, lab) in truth.items():
        splits = {found[f"{name}_z{z:04d}"][0] for z in range(5)}
        assert len(splits) == 1  # a volume never straddles the split
        window = percentile_window(np.transpose(img, (2, 1, 0)))
        for z in range(5):
            _, ip, mp = found[f"{name}_z{z:04d}"]
            # display convention: rows anterior->posterior, columns right->left
            assert np.array_equal(read_png(mp), lab[::-1, ::-1, z].T)
            assert np.array_equal(read_png(ip), to_uint8(img[::-1, ::-1, z].T, window))
    assert summary.cases_valid and summary.cases_train


def test_nifti_keep_empty_and_real_nibabel_file(tmp_path):
    import nibabel as nib
    from nibabel.testing import data_path

    from medseg_gui.core.data.volume_import import import_volumes

    anat = nib.load(os.path.join(data_path, "anatomical.nii"))  # 33x41x25, stored L-A-S
    data = np.asanyarray(anat.dataobj)
    label = np.zeros(data.shape, np.uint8)
    label[5:20, 10:30, 10:14] = 1  # labels on 4 of 25 slices
    src = tmp_path / "pair"
    src.mkdir()
    _save_nifti(src / "label.nii.gz", label, anat.affine)
    summary = import_volumes(os.path.join(data_path, "anatomical.nii"), tmp_path / "out", kind="nifti",
                             label=src / "label.nii.gz", keep_empty=0.0)
    found = outputs(tmp_path / "out")
    assert len(found) == 4 and summary.n_train == 4
    canonical_label = np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(label, anat.affine)).dataobj)
    for key, (_, _, mp) in found.items():
        z = int(key.rsplit("_z", 1)[1])
        assert np.array_equal(read_png(mp), canonical_label[::-1, ::-1, z].T)
    assert any("left out 21 of 25" in w for w in summary.warnings)
    assert any("validation split is empty" in w for w in summary.warnings)


def test_nifti_size_mismatch_and_bad_labels_name_both_files(tmp_path):
    from medseg_gui.core.data.volume_import import import_volumes

    src = tmp_path / "s"
    src.mkdir()
    _save_nifti(src / "a.nii.gz", np.zeros((8, 8, 3), np.float32))
    _save_nifti(src / "a_seg.nii.gz", np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(DatasetImportError, match=r"size mismatch: image .*a\.nii\.gz.* label .*a_seg\.nii\.gz"):
        import_volumes(src, tmp_path / "out", kind="nifti")
    _save_nifti(src / "a_seg.nii.gz", np.full((8, 8, 3), 0.5, np.float32))
    with pytest.raises(DatasetImportError, match=r"a_seg\.nii\.gz: label values must be whole numbers"):
        import_volumes(src, tmp_path / "out", kind="nifti")
    _save_nifti(src / "a_seg.nii.gz", np.full((8, 8, 3), 5, np.uint8))
    with pytest.raises(DatasetImportError, match=r"a_seg\.nii\.gz: label values \[5\] are not below --num-classes 4"):
        import_volumes(src, tmp_path / "out", kind="nifti", num_classes=4)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ DICOM

def test_dicom_series_with_seg_found_by_reference(tmp_path):
    from medseg_gui.core.data.volume_import import import_volumes

    src = tmp_path / "dicom"
    rng = np.random.default_rng(5)
    truths = {}
    for patient in ("P1", "P2", "P3"):
        series_uid = f"1.2.826.0.1.3680043.9.7777.{len(truths) + 1}"
        slices = [rng.integers(0, 2000, (16, 24)).astype(np.int16) for _ in range(3)]
        uids = make_ct_series(src / patient / "ct", slices, [0.0, 2.0, 4.0], series_uid, patient_id=patient)
        a, b = rng.random((16, 24)) > 0.5, rng.random((16, 24)) > 0.7
        # frame 1 found by referenced SOP UID, frames 2-3 by position only
        make_seg(src / patient / "seg.dcm", [(1, 2.0, a), (1, 4.0, b), (2, 4.0, a & ~b)], ["Liver", "Tumour"],
                 series_uid=series_uid, source_uids=[uids[1], None, None])
        expected = np.zeros((3, 16, 24), np.uint8)
        expected[1][a] = 1
        expected[2][b] = 1
        expected[2][a & ~b] = 2
        truths[patient] = (slices, expected)
    make_ct_series(src / "lonely", [np.zeros((16, 24), np.int16)], [0.0], "1.2.3.999")  # no SEG
    before = tree_hash(src)
    summary = import_volumes(src, tmp_path / "out", kind="dicom", val_fraction=0.34, seed=1)
    assert tree_hash(src) == before
    assert summary.class_names[:3] == ["background", "Liver", "Tumour"]
    lonely = [s for s in summary.skipped if s.startswith("the image series (number 1) in lonely:")]
    assert len(lonely) == 1 and "no segmentation (DICOM SEG)" in lonely[0] and "1.2.3.999" not in lonely[0]
    found = outputs(tmp_path / "out")
    assert len(found) == 9
    for patient, (slices, expected) in truths.items():
        keys = sorted(k for k in found if k.startswith(patient))
        assert len(keys) == 3 and len({found[k][0] for k in keys}) == 1
        hu = np.stack(slices).astype(np.int32) - 1024
        for z, key in enumerate(keys):
            assert np.array_equal(read_png(found[key][2]), expected[z]), key
            assert np.array_equal(read_png(found[key][1]), to_uint8(hu[z], (40.0, 400.0)))  # CT soft tissue


def test_dicom_real_liver_seg_on_matching_series(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    from medseg_gui.core.data.volume_import import import_volumes

    seg_path = get_testdata_file("liver_1frame.dcm")
    seg = pydicom.dcmread(seg_path)
    ref_uids = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                for f in seg.PerFrameFunctionalGroupsSequence]
    zs = [-128.69, -127.69, -126.69]
    make_ct_series(tmp_path / "ct", [np.zeros((512, 512), np.int16)] * 3, zs,
                   str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID), sop_uids=ref_uids, xy=(-235.2, -226.8))
    summary = import_volumes(tmp_path / "ct", tmp_path / "out", kind="dicom", label=seg_path)
    found = outputs(tmp_path / "out")
    assert sorted(found) == ["ct_z0000", "ct_z0001", "ct_z0002"]
    assert np.array_equal(read_png(found["ct_z0000"][2]), seg.pixel_array)
    assert not read_png(found["ct_z0001"][2]).any()
    assert summary.class_names[:2] == ["background", "Liver"]


def test_dicom_seg_that_fits_no_slice_names_both(tmp_path):
    from medseg_gui.core.data.volume_import import import_volumes

    make_ct_series(tmp_path / "ct", [np.zeros((16, 24), np.int16)] * 2, [0.0, 2.0], "1.2.3.4")
    make_seg(tmp_path / "seg.dcm", [(1, 50.0, np.ones((16, 24), bool))], ["Liver"], series_uid="1.2.3.4")
    with pytest.raises(DatasetImportError, match=r"seg\.dcm: SEG slice 1 .* matches no slice of the image series .*ct"):
        import_volumes(tmp_path / "ct", tmp_path / "out", kind="dicom", label=tmp_path / "seg.dcm")
    make_seg(tmp_path / "seg2.dcm", [(1, 0.0, np.ones((8, 8), bool))], ["Liver"])
    with pytest.raises(DatasetImportError, match=r"size mismatch: SEG .*seg2\.dcm.*image series .*ct"):
        import_volumes(tmp_path / "ct", tmp_path / "out", kind="dicom", label=tmp_path / "seg2.dcm")


# ------------------------------------------------------------------------------------ flat + CLI

def _flat_dataset(root: Path):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(4)
    truth = {}
    for case in (1, 2, 3):
        for s in range(2):
            name = f"case{case}_slice{s}"
            img16 = rng.integers(0, 60000, (24, 20)).astype(np.uint16)
            mask = rng.integers(0, 3, (24, 20)).astype(np.uint8)
            Image.fromarray(img16).save(root / "images" / f"{name}.png")
            Image.fromarray(mask).save(root / "masks" / f"{name}_mask.png")
            truth[name] = (img16, mask)
    rgba = np.zeros((24, 20, 4), np.uint8)
    Image.fromarray(rgba).save(root / "masks" / "case4_slice0.png")  # colour mask: skipped
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(root / "images" / "case4_slice0.png")
    return truth


def test_flat_import_and_cli_json(tmp_path, capsys):
    from medseg_gui.cli.data_import_cmd import add_import_parser

    src = tmp_path / "flat"
    truth = _flat_dataset(src)
    before = tree_hash(src)
    parser = argparse.ArgumentParser(prog="medseg")
    sub = parser.add_subparsers()
    data = sub.add_parser("data").add_subparsers()
    add_import_parser(data)
    args = parser.parse_args(["data", "import", "--from", "flat", str(src), str(tmp_path / "out"),
                              "--val-fraction", "0.34", "--json"])
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert tree_hash(src) == before
    found = outputs(tmp_path / "out")
    assert set(found) == set(truth)
    for name, (img16, mask) in truth.items():
        assert np.array_equal(read_png(found[name][2]), mask)
        assert np.array_equal(read_png(found[name][1]), to_uint8(img16))
    assert report["n_train"] + report["n_valid"] == 6
    assert any("case4_slice0.png" in s and "colour" in s for s in report["skipped"])
    assert not set(report["cases_train"]) & set(report["cases_valid"])

    args = parser.parse_args(["data", "import", "--from", "kaggle", str(src), str(tmp_path / "k")])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "train.csv" in err and "not found" in err
