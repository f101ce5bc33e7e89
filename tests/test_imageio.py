"""core/imaging readers and writers: 2D images, windowing, DICOM files/series/SEG, NIfTI, mask writing.

Uses the real files pydicom and nibabel ship, and small fixtures built in tmp_path.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from dicom_fixtures import make_ct_series, make_seg
from medseg_gui.core.imaging.dicom import SEG_SOP_CLASS_UID, read_dicom_seg, read_dicom_seg_full
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.imaging.read import is_supported, read_volume
from medseg_gui.core.imaging.volume import ImageReadError
from medseg_gui.core.imaging.window import CT_SOFT_TISSUE_WINDOW, default_window, to_uint8
from medseg_gui.core.imaging.write import write_mask_png, write_nifti_like


def _pydicom_file(name: str) -> str:
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


def _nibabel_file(name: str) -> str:
    from nibabel.testing import data_path

    return os.path.join(data_path, name)


# ------------------------------------------------------------------------------------ 2D images

def test_read_16bit_grey_png_keeps_every_value(tmp_path):
    arr = (np.arange(70 * 90, dtype=np.uint32).reshape(70, 90) * 9 % 65536).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "s.png")
    out = read_image(tmp_path / "s.png")
    assert out.dtype == np.uint16 and np.array_equal(out, arr)


def test_read_16bit_rgb_png_is_not_reduced_to_8_bits(tmp_path):
    import cv2

    rgb = np.random.default_rng(0).integers(0, 65535, (12, 15, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])
    out = read_image(tmp_path / "c.png")
    assert out.dtype == np.uint16 and np.array_equal(out, rgb)


def test_rgba_drops_alpha_palette_keeps_indices_la_keeps_grey(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 7
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (8, 10, 3) and out[0, 0].tolist() == [10, 20, 30]

    idx = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    pal = Image.frombytes("P", (3, 2), idx.tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png"), idx)

    la = Image.fromarray(np.full((4, 5), 77, np.uint8)).convert("LA")
    la.save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    assert out.shape == (4, 5) and (out == 77).all()


def test_tiff_16bit_and_float_and_jpeg_bmp(tmp_path):
    import tifffile

    a16 = np.arange(120, dtype=np.uint16).reshape(10, 12) * 500
    tifffile.imwrite(tmp_path / "a.tif", a16)
    assert np.array_equal(read_image(tmp_path / "a.tif"), a16)
    f = np.linspace(-1, 3, 30, dtype=np.float32).reshape(5, 6)
    tifffile.imwrite(tmp_path / "f.tiff", f)
    assert np.array_equal(read_image(tmp_path / "f.tiff"), f)
    pages = np.stack([a16, a16 + 1, a16 + 2])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    vol = read_volume(tmp_path / "stack.tif")
    assert vol.data.shape == (3, 10, 12) and np.array_equal(vol.data, pages)

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    out = read_image(tmp_path / "x.jpg")
    assert out.shape == (16, 16, 3) and abs(int(out[..., 1].mean()) - 200) <= 2
    Image.fromarray(rgb).save(tmp_path / "x.bmp")
    assert np.array_equal(read_image(tmp_path / "x.bmp"), rgb)


def test_truncated_png_names_file_and_problem(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "cut.png")
    assert "cut.png" in str(err.value) and "truncated" in str(err.value)
    assert isinstance(err.value, ValueError) and err.value.hint


def test_not_an_image_empty_missing_and_volume_formats(tmp_path):
    (tmp_path / "notes.png").write_text("this is not a PNG")
    with pytest.raises(ImageReadError, match=r"notes\.png.*not a recognised image"):
        read_image(tmp_path / "notes.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match=r"missing\.png.*not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "vol.txt").write_text("x")
    with pytest.raises(ImageReadError, match=r"vol\.txt.*unsupported file type"):
        read_volume(tmp_path / "vol.txt")


def test_is_supported(tmp_path):
    import shutil

    assert is_supported("a/b.nii.gz") and is_supported("x.PNG") and not is_supported("x.txt")
    shutil.copy(_pydicom_file("CT_small.dcm"), tmp_path / "IM0001")  # extension-less DICOM
    assert is_supported(tmp_path / "IM0001")


# ------------------------------------------------------------------------------------- windowing

def test_to_uint8_explicit_window_matches_dicom_definition():
    hu = np.array([-1000, -160, 40, 240, 3000], dtype=np.int16)
    out = to_uint8(hu, window=(40, 400))
    assert out.tolist() == [0, 0, 128, 255, 255]


def test_to_uint8_percentile_stretch_and_passthrough():
    ramp = np.linspace(0, 4000, 200 * 200).reshape(200, 200).astype(np.uint16)
    out = to_uint8(ramp)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # monotone
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_uint8(u8) is u8
    flat = np.full((5, 5), 7.0, np.float32)
    assert to_uint8(flat).shape == (5, 5)  # constant image: no division by zero
    with np.errstate(all="raise"):
        to_uint8(np.array([np.nan, 1.0, 2.0], np.float32))
    with pytest.raises(ValueError, match="width"):
        to_uint8(ramp, window=(10, 0))


# ---------------------------------------------------------------------------------------- DICOM

def test_ct_small_rescaled_to_hounsfield_with_geometry():
    import pydicom

    path = _pydicom_file("CT_small.dcm")
    vol = read_volume(path)
    raw = pydicom.dcmread(path).pixel_array
    assert vol.kind == "dicom" and vol.data.shape == (1, 128, 128)
    assert np.array_equal(vol.data[0], raw.astype(np.int32) - 1024)
    assert vol.meta["modality"] == "CT" and vol.meta["rescale_applied"]
    assert vol.spacing == pytest.approx((5.0, 0.661468, 0.661468))
    assert default_window(vol) == CT_SOFT_TISSUE_WINDOW  # CT_small carries no window
    # affine: voxel (0, 0, 0) sits at ImagePositionPatient, in RAS (x, y negated from LPS)
    assert vol.affine[:3, 3] == pytest.approx([158.135803, 179.035797, -75.699997])


def test_mr_small_window_from_header():
    vol = read_volume(_pydicom_file("MR_small.dcm"))
    assert vol.meta["window"] == (600.0, 1600.0) and default_window(vol) == (600.0, 1600.0)
    assert not vol.meta["rescale_applied"] and vol.data.shape == (1, 64, 64)


def test_multiframe_rgb_dicom():
    vol = read_volume(_pydicom_file("SC_rgb_rle_2frame.dcm"))
    assert vol.data.shape == (2, 100, 100, 3) and vol.is_rgb and vol.meta["frames"] == 2


def test_truncated_dicom_names_file_and_problem():
    with pytest.raises(ImageReadError) as err:
        read_volume(_pydicom_file("MR_truncated.dcm"))
    assert "MR_truncated.dcm" in str(err.value) and "truncated" in str(err.value)


def test_dicom_series_sorted_by_position_and_largest_series_wins(tmp_path):
    folder = tmp_path / "series"
    slices = [np.full((20, 24), 100 * k, np.int16) for k in range(5)]
    zs = [10.0, 12.0, 14.0, 16.0, 18.0]
    order = [3, 0, 4, 1, 2]  # file names in a shuffled order vs position
    make_ct_series(folder, [slices[k] for k in order], [zs[k] for k in order], "1.2.3.4.1",
                   names=[f"f{i}.dcm" for i in range(5)])
    make_ct_series(folder, slices[:2], zs[:2], "1.2.3.4.2", names=["other0.dcm", "other1.dcm"])
    (folder / "readme.txt").write_text("not dicom")
    vol = read_volume(folder)
    assert vol.data.shape == (5, 20, 24) and vol.kind == "dicom"
    assert [int(vol.data[z, 0, 0]) for z in range(5)] == [100 * k - 1024 for k in range(5)]
    assert vol.spacing[0] == pytest.approx(2.0)
    assert vol.meta["series_uid"] == "1.2.3.4.1" and "2 series" in vol.meta["note"]
    assert [p[2] for p in vol.meta["positions"]] == zs


def test_seg_liver_1frame_is_read_as_labels():
    import pydicom

    for name in ("liver_1frame.dcm", "liver_expb_1frame.dcm"):  # little- and big-endian
        path = _pydicom_file(name)
        assert str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID) == SEG_SOP_CLASS_UID
        labels, names = read_dicom_seg(path)
        expected = pydicom.dcmread(path).pixel_array
        assert labels.shape == (1, 512, 512) and labels.dtype == np.uint8
        assert names == ["background", "Liver"]
        assert np.array_equal(labels[0], expected.astype(np.uint8))
        assert int(labels.sum()) == 36233
    full = read_dicom_seg_full(_pydicom_file("liver_1frame.dcm"))
    assert full.positions[0] == pytest.approx([-235.2, -226.8, -128.69])
    assert "3 frames" in full.warnings[0]  # the file's header lists 3 frames, its pixels hold 1


@pytest.mark.parametrize("fractional", [False, True])
def test_multi_segment_seg_pixel_for_pixel(tmp_path, fractional):
    rng = np.random.default_rng(3)
    a0, a1, b0 = (rng.random((16, 24)) > 0.5 for _ in range(3))
    if fractional:  # probabilities: >= 128/255 counts as inside
        frames = [(1, 5.0, np.where(a0, 200, 60)), (1, 3.0, np.where(a1, 128, 127)),
                  (2, 5.0, np.where(b0, 255, 0))]
    else:
        frames = [(1, 5.0, a0), (1, 3.0, a1), (2, 5.0, b0)]
    make_seg(tmp_path / "seg.dcm", frames, ["Liver", "Tumour"], fractional=fractional)
    labels, names = read_dicom_seg(tmp_path / "seg.dcm")
    assert names == ["background", "Liver", "Tumour"]
    expected = np.zeros((2, 16, 24), np.uint8)
    expected[0][a1] = 1                    # z = 3 comes first
    expected[1][a0] = 1
    expected[1][b0] = 2                    # segment 2 wins where both are set
    assert np.array_equal(labels, expected)


def test_seg_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"CT_small\.dcm.*not a DICOM SEG"):
        read_dicom_seg(_pydicom_file("CT_small.dcm"))
    with pytest.raises(ImageReadError, match=r"liver_1frame\.dcm.*is a DICOM SEG"):
        read_volume(_pydicom_file("liver_1frame.dcm"))


# ---------------------------------------------------------------------------------------- NIfTI

@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz"])
def test_nifti_canonical_z_first_with_consistent_affine(name):
    import nibabel as nib

    path = _nibabel_file(name)
    canonical = nib.as_closest_canonical(nib.load(path))
    c = np.asanyarray(canonical.dataobj)
    vol = read_volume(path)
    nx, ny, nz = c.shape
    assert vol.kind == "nifti" and vol.data.shape == (nz, ny, nx) and vol.data.dtype.isnative
    z, r, col = nz - 1, 1, 2
    assert vol.data[z, r, col] == c[nx - 1 - col, ny - 1 - r, z]
    world_ours = vol.affine @ np.array([z, r, col, 1.0])
    world_nib = canonical.affine @ np.array([nx - 1 - col, ny - 1 - r, z, 1.0])
    assert world_ours == pytest.approx(world_nib)
    zooms = canonical.header.get_zooms()
    assert vol.spacing == pytest.approx((zooms[2], zooms[1], zooms[0]))


def test_nifti_4d_takes_first_frame():
    vol = read_volume(_nibabel_file("example4d.nii.gz"))
    assert vol.data.shape == (24, 96, 128) and vol.meta["frames"] == 2 and "frame 0" in vol.meta["note"]


def test_write_nifti_like_lands_in_the_source_voxel_grid(tmp_path):
    import nibabel as nib

    path = _nibabel_file("anatomical.nii")  # stored L-A-S, so the write-back must undo a flip
    original = nib.load(path)
    vol = read_volume(path)
    thr = np.percentile(vol.data, 70)
    write_nifti_like(tmp_path / "mask.nii.gz", (vol.data > thr).astype(np.uint8), vol)
    back = nib.load(tmp_path / "mask.nii.gz")
    assert back.shape == original.shape
    assert np.allclose(back.affine, original.affine)
    assert np.array_equal(np.asanyarray(back.dataobj), (np.asanyarray(original.dataobj) > thr).astype(np.uint8))
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temp file left behind


def test_write_nifti_like_from_dicom_series_reads_back_identically(tmp_path):
    folder = tmp_path / "ct"
    slices = [np.full((20, 24), k, np.int16) for k in range(3)]
    make_ct_series(folder, slices, [0.0, 2.0, 4.0], "1.2.3.9")
    vol = read_volume(folder)
    labels = np.zeros((3, 20, 24), np.uint8)
    labels[0, 2:5, 3:9] = 1
    labels[2, 10:, :4] = 2
    write_nifti_like(tmp_path / "m.nii", labels, vol)
    back = read_volume(tmp_path / "m.nii")
    assert np.array_equal(back.data, labels)  # same display orientation as the DICOM
    assert back.affine == pytest.approx(vol.affine)
    with pytest.raises(ValueError, match="does not match"):
        write_nifti_like(tmp_path / "bad.nii", labels[:2], vol)


# ------------------------------------------------------------------------------------ mask PNGs

def test_write_mask_png_roundtrip_and_errors(tmp_path):
    labels = np.random.default_rng(2).integers(0, 4, (30, 40)).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_mask_png(tmp_path / "m.png", labels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), labels)
    with pytest.raises(ValueError, match=r"big\.png.*0\.\.255"):
        write_mask_png(tmp_path / "big.png", np.full((2, 2), 300))
    with pytest.raises(ValueError, match=r"f\.png.*integer"):
        write_mask_png(tmp_path / "f.png", np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=r"3d\.png.*2D"):
        write_mask_png(tmp_path / "3d.png", np.zeros((2, 2, 3), np.uint8))


def test_folder_of_slices_natural_order_and_mismatch(tmp_path):
    for k in (1, 2, 10):
        Image.fromarray(np.full((6, 7), k, np.uint8)).save(tmp_path / f"slice_{k}.png")
    vol = read_volume(tmp_path)
    assert vol.kind == "folder" and [int(vol.data[z, 0, 0]) for z in range(3)] == [1, 2, 10]
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "slice_11.png")
    with pytest.raises(ImageReadError, match=r"slice_11\.png.*differs"):
        read_volume(tmp_path)
