"""Hostile or mistaken inputs: one clear line (exit 1 or 2), never a traceback, never a hang.

Covers: Kaggle csv files with non-UTF-8 bytes, oversize fields, absurd numbers and negative runs;
decompression bombs (predict reports that input and goes on; data check and imports flag it);
FIFOs, devices and folders given as images (refused from ``stat`` without opening them); masks
stored as 0/255 (the check's hint and the import agree: 255 becomes class 1).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from medseg_gui.cli import main
from medseg_gui.core.data.decode import DecodeError
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.imaging.read import read_volume
from medseg_gui.core.imaging.volume import ImageReadError

from data_helpers import make_pair, write_png
from test_data_import import make_kaggle
from viewer_helpers import ramp_image, tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("hostile_models"))


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) <= 2, err  # the error (+ a hint)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes claiming a ``width`` x ``height`` picture: what a decompression bomb looks like
    to a reader that trusts the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ---- Kaggle csv ----------------------------------------------------------------------------------------
def _edit_first_row(csv: Path, segmentation: str) -> None:
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + "," + segmentation
    csv.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("damage, words", [
    ("latin1", "not UTF-8"),
    ("oversize", "field larger than field limit"),
    ("huge", "beyond the slice"),
    ("negative", "negative run length"),
])
def test_kaggle_csv_damage_is_one_line(tmp_path, capsys, damage, words):
    src = tmp_path / "kaggle"
    make_kaggle(src, cases=(1, 2), days=(0,), n_slices=1)
    csv = src / "train.csv"
    if damage == "latin1":
        csv.write_bytes(csv.read_bytes().replace(b"stomach", b"stom\xe9ch", 1))
    elif damage == "oversize":
        _edit_first_row(csv, '"' + "1 2 " * 40000 + '"')
    elif damage == "huge":
        _edit_first_row(csv, "1 99999999999999999999999999")
    else:
        _edit_first_row(csv, "5 -3")
    code = main(["data", "import", "--from", "kaggle", str(src), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    _one_line_error(err)
    assert words in err and "train.csv" in err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, no lock left


# ---- decompression bombs -------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [10_000, 30_000])  # PIL's warning range, and its error range
def test_readers_refuse_a_decompression_bomb(tmp_path, side):
    from medseg_gui.core.data.decode import read_image as decode_image
    from medseg_gui.core.data.decode import read_mask

    bomb = png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(bomb)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_volume(bomb)
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(bomb)
    with pytest.raises(DecodeError, match="decompression bomb"):
        read_mask(bomb)


def test_a_nifti_claiming_a_gigantic_volume_is_refused_before_reading(tmp_path):
    import gzip

    import nibabel as nib

    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).header
    header.set_data_shape((5000, 5000, 5000))
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb") as fh:  # a header and a few bytes: 75 bytes on disk, 125 GB claimed
        fh.write(header.binaryblock + b"\0" * 104)
    with pytest.raises(ImageReadError, match="safety limit"):
        read_volume(bomb)


def test_predict_reports_a_bomb_and_goes_on(tmp_path, bundle, capsys):
    bomb = png_header_only(tmp_path / "bomb.png", 30_000, 30_000)
    good = write_png(tmp_path / "good.png", ramp_image())
    code = main(["predict", str(bundle), str(bomb), str(good), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "bomb.png" in captured.err and "decompression bomb" in captured.err
    assert "1 input(s) done, 1 failed" in captured.out
    assert (tmp_path / "out" / "good_mask.png").is_file()


def test_data_check_and_import_flag_a_bomb_as_a_bad_file(tmp_path, capsys):
    src = tmp_path / "flat"
    for i in range(4):
        make_pair(src / "images", src / "masks", f"c{i}", seed=i)
    png_header_only(src / "images" / "bomb.png", 10_000, 10_000)
    shutil.copy(src / "masks" / "c0.png", src / "masks" / "bomb.png")
    assert main(["data", "check", str(src), "--json"]) == 0  # trains without the bad pair
    report = json.loads(capsys.readouterr().out)
    flagged = [p for p in report["problems"] if "bomb.png" in json.dumps(p)]
    assert flagged and "decompression bomb" in json.dumps(flagged)
    assert main(["data", "import", "--from", "flat", str(src), str(tmp_path / "dst"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("bomb.png" in s and "decompression bomb" in s for s in summary["skipped"])
    assert summary["n_train"] + summary["n_valid"] == 4 == len(list((tmp_path / "dst").glob("*/images/*.png")))


# ---- FIFOs, devices, folders ---------------------------------------------------------------------------
def _finishes(fn, fifo: Path | None = None, timeout: float = 300.0):
    """Run ``fn`` in a thread; if it is still blocked after ``timeout`` (reading the FIFO), unblock it by
    opening the FIFO for writing, and fail: a hang must show up as a failure, not a stuck suite."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            with open(fifo, "wb"):
                pass
        thread.join(30)
        pytest.fail(f"{fn} blocked on a FIFO")
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX thing")
def test_fifos_devices_and_folders_are_refused_without_opening_them(tmp_path, bundle, capsys):
    from medseg_gui.core.data.decode import read_image as decode_image

    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    for reader in (read_image, read_volume):
        with pytest.raises(ImageReadError, match="pipe"):
            _finishes(lambda r=reader: r(fifo), fifo)
    with pytest.raises(DecodeError, match="pipe"):
        _finishes(lambda: decode_image(fifo), fifo)
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    good = write_png(tmp_path / "good.png", ramp_image())
    argv = ["predict", str(bundle), str(fifo), "/dev/null", str(good), "--out", str(tmp_path / "out")]
    code = _finishes(lambda: main(argv), fifo)
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "pipe (FIFO)" in captured.err and "/dev/null: is a device" in captured.err
    assert (tmp_path / "out" / "good_mask.png").is_file()
    # the data check flags a FIFO in a dataset instead of blocking on it
    src = tmp_path / "flat"
    for i in range(3):
        make_pair(src / "images", src / "masks", f"c{i}", seed=i)
    os.mkfifo(src / "images" / "p.png")
    shutil.copy(src / "masks" / "c0.png", src / "masks" / "p.png")
    code = _finishes(lambda: main(["data", "check", str(src), "--json"]), src / "images" / "p.png")
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # whether the rest can train depends on the split; the FIFO is flagged either way
    assert any(p["path"] == "images/p.png" and "pipe" in p["message"] for p in report["problems"])


# ---- masks stored as 0/255 -----------------------------------------------------------------------------
def test_masks_stored_as_0_255_check_hint_and_import_agree(tmp_path, capsys):
    src = tmp_path / "flat"
    for i in range(4):
        image, mask = make_pair(src / "images", src / "masks", f"c{i}", seed=i, num_classes=2)
        write_png(mask, (read_image(mask) > 0).astype(np.uint8) * 255)
    assert main(["data", "check", str(src), "--num-classes", "2"]) == 1
    out = capsys.readouterr().out
    assert "0/255" in out and "255 written as class 1" in out and "`" not in out
    dst = tmp_path / "dst"
    assert main(["data", "import", "--from", "flat", str(src), str(dst), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert any("0 and 255" in w for w in summary["warnings"])
    masks = sorted(dst.glob("*/masks/*.png"))
    assert len(masks) == 4
    for path in masks:
        assert set(np.unique(read_image(path))) == {0, 1}
    assert main(["data", "check", str(dst), "--num-classes", "2"]) == 0  # what the hint promised


# ---- DICOM pixel data claiming a gigantic size -----------------------------------------------------------
def _dicom_claiming(path: Path, rows: int, cols: int, frames: int = 1) -> Path:
    """A real CT header with a few bytes of pixel data, claiming ``frames`` x ``rows`` x ``cols``."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = b"\0" * 64
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("rows, cols, frames, words", [
    (20_000, 20_000, 1, "20000x20000 pixels"),  # one frame over the 2D limit PNGs have
    (1024, 1024, 3000, "3000 frames of 1024x1024"),  # each frame fine, together over the volume limit
])
def test_dicom_claiming_gigantic_pixel_data_is_refused_in_one_line(tmp_path, bundle, capsys, rows, cols, frames,
                                                                   words):
    from medseg_gui.core.imaging.dicom import too_many_dicom_pixels

    bomb = _dicom_claiming(tmp_path / "bomb.dcm", rows, cols, frames)
    with pytest.raises(ImageReadError, match="decompression bomb") as err:
        read_volume(bomb)
    assert words in str(err.value) and "bomb.dcm" in str(err.value)
    import pydicom

    assert too_many_dicom_pixels(pydicom.dcmread(bomb, stop_before_pixels=True))
    assert not too_many_dicom_pixels(pydicom.dcmread(_dicom_claiming(tmp_path / "ok.dcm", 512, 512, 400),
                                                     stop_before_pixels=True))  # a real multi-frame CT
    good = write_png(tmp_path / "good.png", ramp_image())
    code = main(["predict", str(bundle), str(bomb), str(good), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    (line,) = [ln for ln in captured.err.splitlines() if "bomb.dcm" in ln]
    assert "decompression bomb" in line
    assert (tmp_path / "out" / "good_mask.png").is_file()  # the others go on


def test_a_dicom_series_claiming_too_many_pixels_together_is_refused(tmp_path, monkeypatch):
    import medseg_gui.core.imaging.dicom as dicom
    from dicom_fixtures import make_ct_series

    make_ct_series(tmp_path / "ct", [np.zeros((8, 8), np.int16)] * 30, [2.0 * i for i in range(30)], "1.2.3.4")
    assert read_volume(tmp_path / "ct").data.shape == (30, 8, 8)
    monkeypatch.setattr(dicom, "MAX_VOLUME_VOXELS", 30 * 64 - 1)
    with pytest.raises(ImageReadError, match=r"claims .* pixels in 30 files, over the safety limit"):
        read_volume(tmp_path / "ct")
