"""Compressed DICOM opens through permissive decoders (core/imaging/dicom_codecs.py).

Each lossless syntax is made here from a known series (pydicom's own encoders for RLE and JPEG-LS,
GDCM's for JPEG Lossless and JPEG 2000) and must read back voxel for voxel; JPEG Baseline is made with
Pillow and must come back close (it is lossy); 12-bit JPEG Extended (a file pydicom ships) is refused with a clear line.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from dicom_fixtures import make_ct_series
from medseg_gui.core.imaging.dicom import read_dicom_file, read_dicom_series
from medseg_gui.core.imaging.dicom_codecs import (COMPRESSED_SYNTAXES, PERMISSIVE_PLUGINS, available_decoders,
                                                  missing_decoder_hint)

RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def _slices() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:24, 0:32]
    return [((yy * 37 + xx * 11 + k * 101) % 1500 + 10 * k).astype(np.int16) for k in range(3)]


def _series(folder: Path) -> list[Path]:
    make_ct_series(folder, _slices(), [0.0, 2.5, 5.0], "1.2.826.0.1.3680043.9.7777.5.1")
    return sorted(folder.iterdir())


def _compress(path: Path, syntax: str) -> None:
    """Re-encode one file in place with ``syntax`` (pydicom's encoder where it has one, else GDCM's)."""
    import pydicom

    if syntax in (RLE, JPEG_LS):
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
        return
    import gdcm

    ts = {JPEG_LOSSLESS: gdcm.TransferSyntax.JPEGLosslessProcess14,
          JPEG_LOSSLESS_SV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
          J2K_LOSSLESS: gdcm.TransferSyntax.JPEG2000Lossless}[syntax]
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(ts))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(path))
    assert writer.Write()
    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax


@pytest.mark.parametrize("syntax", [RLE, JPEG_LS, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, J2K_LOSSLESS])
def test_lossless_series_reads_back_exactly(tmp_path: Path, syntax: str) -> None:
    plain = read_dicom_series(_series(tmp_path / "plain"))
    files = _series(tmp_path / "packed")
    for f in files:
        _compress(f, syntax)
    packed = read_dicom_series(files)
    assert packed.data.shape == (3, 24, 32)
    assert np.array_equal(packed.data, plain.data)
    assert np.array_equal(packed.data[1] - packed.data[0], (_slices()[1] - _slices()[0]).astype(packed.data.dtype))
    assert packed.affine is not None and np.allclose(packed.affine, plain.affine)


def test_jpeg_baseline_8bit_opens_close_to_the_original(tmp_path: Path) -> None:
    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate

    path = _series(tmp_path / "s")[0]
    yy, xx = np.mgrid[0:24, 0:32]
    grey = (yy * 6 + xx * 3).astype(np.uint8)  # smooth: baseline JPEG keeps it within a few levels
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=95)
    ds = pydicom.dcmread(path)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG_BASELINE
    ds.save_as(path, enforce_file_format=True)
    vol = read_dicom_file(path)
    assert vol.data.shape == (1, 24, 32)
    assert np.abs(vol.data[0].astype(int) - grey.astype(int)).max() <= 8


def test_jpeg_extended_12bit_is_refused_in_one_line_that_says_what_to_do() -> None:
    """No permissive decoder pydicom knows takes 12-bit JPEG Extended: the user is told to decompress."""
    from pydicom.data import get_testdata_file

    from medseg_gui.core.imaging.volume import ImageReadError

    with pytest.raises(ImageReadError) as info:
        read_dicom_file(Path(get_testdata_file("JPGExtended.dcm")))
    text = str(info.value)
    assert "\n" not in text and "12-bit JPEG Extended" in text and "gdcmconv --raw" in text
    assert "pylibjpeg" not in text  # never send the user to the GPL decoder


def test_every_listed_syntax_has_a_permissive_decoder_installed() -> None:
    for uid, (name, plugins) in COMPRESSED_SYNTAXES.items():
        found = available_decoders(uid)
        assert found, f"{name} ({uid}) has no decoder installed"
        assert set(found) <= set(PERMISSIVE_PLUGINS), f"{name}: unexpected decoder {found}"
        assert set(found) & set(plugins)


def test_gpl_decoder_is_not_installed() -> None:
    """pylibjpeg-libjpeg (GPL-3) must not be in the environment the bundle is built from."""
    import importlib.util

    assert importlib.util.find_spec("libjpeg") is None


def test_hint_names_an_unknown_compression() -> None:
    import pydicom

    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    assert "not one this program opens" in missing_decoder_hint(ds)
