"""Reading medical images and volumes, and writing masks back, for the importers and the viewer.

One place knows the quirks of each format so the rest of the app sees only numpy arrays:

* 2D images (PNG/JPEG/TIFF/BMP, 8/16-bit, grey/RGB/RGBA/palette) -> ``read_image``.
* Volumes -> ``read_volume`` returning a :class:`Volume` whose ``data`` is always ``[Z, H, W]`` (or
  ``[Z, H, W, 3]`` for colour), whatever the source: one 2D image (Z = 1), a folder of 2D slices, a
  multi-page TIFF, a DICOM file (incl. multi-frame) or series folder, a NIfTI file.
* DICOM SEG label objects -> ``read_dicom_seg``.
* Intensities -> ``to_uint8`` with a percentile window (MR has no absolute scale) or an explicit
  window/level (CT in Hounsfield units, or a DICOM's own window).
* Masks out -> ``write_mask_png`` and ``write_nifti_like`` (atomic, so an export never leaves half a
  file behind).

Orientation contract: a slice ``data[z]`` is shown with row 0 at the top and column 0 at the left.
DICOM pixel data already follows the radiological convention (axial: anterior up, patient's right on
the left); NIfTI volumes are brought to the same convention (canonical RAS, then both in-plane axes
flipped), so one series converted to NIfTI looks the same as its DICOM. ``Volume.affine`` maps a
``(z, y, x, 1)`` index of ``data`` to RAS+ millimetres, whatever the source.

pydicom, nibabel, tifffile and OpenCV are imported inside the functions that need them, so importing
this module costs only numpy and PIL.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

#: Qt file-dialog filter (``QFileDialog.getOpenFileName(..., filter=FILE_DIALOG_FILTER)``).
#: DICOM files often have no extension, hence the "All files" entry.
FILE_DIALOG_FILTER = ";;".join([
    "Images and volumes (*.png *.jpg *.jpeg *.tif *.tiff *.bmp *.dcm *.dicom *.ima *.nii *.nii.gz)",
    "2D images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)",
    "DICOM (*.dcm *.dicom *.ima)",
    "NIfTI (*.nii *.nii.gz)",
    "All files (*)",
])

#: Percentile window used when no explicit window is given. Same numbers as the training loader's
#: ``core.data.decode.WINDOW_PERCENTILES`` so an imported slice and a directly read one look alike.
DEFAULT_PERCENTILES = (0.5, 99.5)

#: Abdominal soft-tissue window (centre, width) in HU, used for CT that carries no window of its own.
CT_SOFT_TISSUE_WINDOW = (40.0, 400.0)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"

#: Largest volume read (voxels, all frames; NIfTI and DICOM): ~8 GB as float32, far above any CT or MR series.
MAX_VOLUME_VOXELS = 2**31


class ImageReadError(ValueError):
    """A file could not be read as an image/volume. ``str()`` names the file, the problem and a fix."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        self.hint = hint
        message = f"{self.path}: {reason}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


@dataclass
class Volume:
    """A stack of 2D slices with its geometry.

    ``data`` is ``[Z, H, W]`` (grey) or ``[Z, H, W, 3]`` (RGB), in the source's own dtype (DICOM
    after RescaleSlope/Intercept). ``spacing`` is ``(z, y, x)`` in mm when the format records it.
    ``affine`` (4x4) maps ``(z, y, x, 1)`` indices of ``data`` to RAS+ mm when known.
    ``meta`` holds what the viewer may show: ``modality``, ``window`` (centre, width),
    ``rescale_applied``, ``series_uid``, ``note`` (e.g. which of several series was loaded), and
    format-specific keys used to write a mask back into the source's grid.
    """

    data: np.ndarray
    spacing: tuple[float, float, float] | None
    source: Path
    kind: str  # 'image' | 'dicom' | 'nifti' | 'folder'
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.data.shape[0])

    @property
    def slice_shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def is_rgb(self) -> bool:
        return self.data.ndim == 4


# ----------------------------------------------------------------------------------------- helpers

def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``slice_2`` before ``slice_10`` (how people number slices)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``-like name or a file with the DICOM ``DICM`` marker (extension-less files)."""
    path = Path(path)
    return path.is_file() and (_suffix(path) in DICOM_SUFFIXES or _has_dicom_magic(path))


def is_supported(path: str | os.PathLike) -> bool:
    """Whether ``read_volume`` can try this path: a known extension, a DICOM file, or a folder."""
    path = Path(path)
    if path.is_dir():
        return True
    if _suffix(path) in SUPPORTED_SUFFIXES:
        return True
    return path.is_file() and _has_dicom_magic(path)


def _require_file(path: Path) -> None:
    """Refuse what is not a readable regular file *before* opening it: opening a FIFO blocks until
    someone writes to it, and reading a device may never end."""
    from medseg_gui.core.output_guard import not_a_regular_file

    problem = not_a_regular_file(path)
    if problem == "file not found":
        raise ImageReadError(path, "file not found", "check the path and that the drive is mounted")
    if problem.startswith("is a folder"):
        raise ImageReadError(path, "is a folder, not an image file", "use read_volume for folders")
    if problem:
        raise ImageReadError(path, problem, "choose an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "re-export or re-copy the file")


def max_image_pixels() -> int:
    """Largest 2D image (width x height) we decode: PIL's decompression-bomb limit (about 89 megapixels
    unless changed), far above any scan, so a tiny file claiming a gigantic size cannot exhaust memory."""
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 2**31)


def too_many_pixels(width: int, height: int) -> str:
    """Why a ``width`` x ``height`` image is refused before decoding ('' when it is not)."""
    limit = max_image_pixels()
    if width * height <= limit:
        return ""
    return (f"image claims {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), over the safety "
            f"limit of {limit / 1e6:.0f} megapixels (a possible decompression bomb)")


def _rows_cols(ds: Any) -> tuple[int, int]:
    """Rows and Columns from a DICOM header; 0 where missing or unusable (pydicom's decoder then says so)."""
    try:
        return int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    except (TypeError, ValueError):
        return 0, 0


def too_many_dicom_pixels(ds: Any) -> str:
    """Why a DICOM file's pixel data is refused before decoding ('' when it is not): its header's Rows x
    Columns per frame over the 2D limit (the one PNGs have), or x NumberOfFrames over the NIfTI volume limit.
    Checked on the header so a small compressed file cannot claim gigabytes of pixels."""
    rows, cols = _rows_cols(ds)
    frame = too_many_pixels(cols, rows)
    if frame:
        return frame
    frames = _frame_count(ds)
    total = rows * cols * frames
    if total <= MAX_VOLUME_VOXELS:
        return ""
    return (f"DICOM claims {frames} frames of {cols}x{rows} pixels ({total / 1e9:.1f} billion), over the safety "
            f"limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion (a possible decompression bomb)")


def _check_pixels(path: Path, width: int, height: int) -> None:
    reason = too_many_pixels(width, height)
    if reason:
        raise ImageReadError(path, reason, "downscale or crop the image, or remove it")


# ------------------------------------------------------------------------------------- 2D images

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D PNG/JPEG/TIFF/BMP into ``[H, W]`` or ``[H, W, 3]``, keeping its bit depth.

    RGBA/LA lose their alpha (masks and scans never mean transparency), palette images keep their
    indices (palette PNG masks store class ids that way), CMYK/YCbCr become RGB, 16-bit stays
    uint16 and float stays float32 (use :func:`to_uint8` to display them). Multi-page TIFFs return
    their first page (``read_volume`` reads all pages).
    """
    path = Path(path)
    _require_file(path)
    suffix = _suffix(path)
    if suffix in DICOM_SUFFIXES or suffix in NIFTI_SUFFIXES:
        raise ImageReadError(path, "is a volume format, not a 2D image", "open it with read_volume")
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path)[0]
    if suffix == ".png" and _png_is_16bit_colour(path):
        return _read_png_16bit_colour(path)
    return _read_with_pil(path)


def _read_with_pil(path: Path) -> np.ndarray:
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own check below says it in one clear line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            _check_pixels(path, *im.size)
            im.load()  # decode now: truncated files fail here, not later in a worker
            return _pil_to_array(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(path, f"image is over the safety limit of {max_image_pixels() / 1e6:.0f} megapixels "
                             "(a possible decompression bomb)", "downscale or crop the image, or remove it") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image (unknown or corrupt header)",
                             f"supported: {', '.join(IMAGE_SUFFIXES)}; convert the file or remove it") from None
    except OSError as exc:
        raise ImageReadError(path, f"unreadable or truncated image ({exc})",
                             "the file is probably cut short; re-copy or re-export it") from None
    except (ValueError, SyntaxError) as exc:  # PIL raises these for some corrupt headers
        raise ImageReadError(path, f"corrupt image ({exc})", "re-export the file") from None


def _pil_to_array(im: Any) -> np.ndarray:
    mode = im.mode
    if mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode in ("LA", "La"):
        im = im.getchannel("L")
    elif mode == "PA":
        im = im.getchannel("P") if hasattr(im, "getchannel") else im.convert("P")
    elif mode == "1":
        return np.asarray(im, dtype=np.uint8)  # 0/1 as stored
    arr = np.asarray(im)
    if mode.startswith("I;16"):
        arr = arr.astype(np.uint16, copy=False)
    elif mode == "I":
        arr = _narrow_int(arr)
    elif mode == "F":
        arr = arr.astype(np.float32, copy=False)
    return np.ascontiguousarray(arr)


def _narrow_int(arr: np.ndarray) -> np.ndarray:
    """PIL opens some 16-bit files as int32 mode 'I'; give back uint16 when the values fit."""
    if arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return arr.astype(np.uint16)
    return arr


def _png_is_16bit_colour(path: Path) -> bool:
    """PIL silently reduces 16-bit RGB(A) PNGs to 8 bits; detect them from the IHDR chunk."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return False
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 6)


def _read_png_16bit_colour(path: Path) -> np.ndarray:
    import cv2

    with open(path, "rb") as fh:
        head = fh.read(24)
    _check_pixels(path, int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    raw = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3:
        raise ImageReadError(path, "unreadable or truncated 16-bit colour PNG",
                             "re-copy or re-export the file")
    img = img[:, :, :3][:, :, ::-1]  # BGR(A) -> RGB, alpha dropped
    return np.ascontiguousarray(img)


def _read_tiff(path: Path) -> list[np.ndarray]:
    """All pages of a TIFF as 2D/RGB arrays (tifffile keeps 16-bit and float exactly)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:  # sizes from the headers first: a tiny file may claim a gigantic page
                shape = tuple(getattr(page, "shape", ()) or ())
                spatial = [d for d in shape if d > 4] or [1]
                _check_pixels(path, int(np.prod(spatial[:2])), 1)
            pages = [page.asarray() for page in tif.pages]
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise ImageReadError(path, f"unreadable or truncated TIFF ({type(exc).__name__}: {exc})",
                             "re-copy or re-export the file") from None
    out = []
    for arr in pages:
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)  # planar RGB
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        elif arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
            raise ImageReadError(path, f"TIFF page of shape {arr.shape} is not a 2D grey or RGB image",
                                 "save each slice as a 2D grey or RGB page")
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == bool:
            arr = arr.astype(np.uint8)
        out.append(np.ascontiguousarray(arr))
    if not out:
        raise ImageReadError(path, "TIFF has no pages", "re-export the file")
    return out


# ------------------------------------------------------------------------------------- windowing

def percentile_window(array: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
                      ) -> tuple[float, float]:
    """(centre, width) spanning the given percentiles of the finite values.

    Large arrays are subsampled every 4th pixel in-plane, as the training loader does, which moves
    the percentiles by far less than one grey level and saves most of the time.
    """
    data = np.asarray(array)
    # in-plane axes: (0, 1) for [H, W] / [H, W, 3] images, (1, 2) for [Z, H, W(, 3)] volumes
    plane = (0, 1) if data.ndim == 2 or (data.ndim == 3 and data.shape[-1] == 3) else (1, 2)
    if data.ndim >= 2 and data.shape[plane[0]] >= 64 and data.shape[plane[1]] >= 64:
        index = [slice(None)] * data.ndim
        index[plane[0]] = index[plane[1]] = slice(None, None, 4)
        data = data[tuple(index)]
    data = data.astype(np.float32, copy=False)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return (lo + hi) / 2.0, hi - lo


def to_uint8(array: np.ndarray, window: tuple[float, float] | None = None,
             percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Map intensities to uint8 for display or training.

    ``window=(centre, width)`` applies a window/level as DICOM defines it (values below
    ``centre - width/2`` go to 0, above ``centre + width/2`` to 255) — use it for CT in HU or a
    DICOM's own window. Without a window, uint8 input is returned unchanged and anything else is
    stretched between the given percentiles of the whole array (so a volume keeps one window across
    its slices). NaN/inf become 0.
    """
    arr = np.asarray(array)
    if window is None:
        if arr.dtype == np.uint8:
            return arr
        if arr.dtype == bool:
            return arr.astype(np.uint8) * 255
        window = percentile_window(arr, percentiles)
    centre, width = float(window[0]), float(window[1])
    if not np.isfinite(centre) or not np.isfinite(width) or width <= 0:
        raise ValueError(f"window width must be a positive number, got centre={centre}, width={width}")
    lo = centre - width / 2.0
    data = arr.astype(np.float32, copy=True) if arr.dtype != np.float32 else arr.copy()
    np.nan_to_num(data, copy=False, nan=lo, posinf=lo + width, neginf=lo)
    data -= lo
    data *= 255.0 / width
    np.clip(data, 0.0, 255.0, out=data)
    return np.rint(data, out=data).astype(np.uint8)


def window_from_dicom(ds: Any) -> tuple[float, float] | None:
    """The first (centre, width) pair a DICOM dataset carries (shared/per-frame groups included)."""
    centre = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if centre is None or width is None:
        voi = _functional_item(ds, "FrameVOILUTSequence", 0)
        if voi is not None:
            centre = _first_number(voi.get("WindowCenter"))
            width = _first_number(voi.get("WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    return centre, width


def default_window(volume: Volume, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
                   ) -> tuple[float, float]:
    """The window the viewer and the importers start from: the file's own window if it has one,
    a soft-tissue window for CT in HU, else a percentile window over the whole volume."""
    window = volume.meta.get("window")
    if window:
        return float(window[0]), float(window[1])
    if volume.meta.get("modality") == "CT" and volume.meta.get("rescale_applied"):
        return CT_SOFT_TISSUE_WINDOW
    return percentile_window(volume.data, percentiles)


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0] if len(value) else None
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------ volumes

def read_volume(path: str | os.PathLike) -> Volume:
    """Read an image, a folder of slices, a DICOM file/series or a NIfTI file as a :class:`Volume`.

    A folder is a DICOM series if it holds DICOM files (the largest series wins if there are
    several, and ``meta['note']`` says so), else a stack of 2D slices in natural name order.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "not found", "check the path")
    if path.is_dir():
        return _read_folder(path)
    _require_file(path)
    suffix = _suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path)
    if suffix in DICOM_SUFFIXES or _has_dicom_magic(path):
        return _read_dicom_file(path)
    if suffix in (".tif", ".tiff"):
        pages = _read_tiff(path)
        return _stack_slices(path, pages, [path] * len(pages), kind="image")
    if suffix in IMAGE_SUFFIXES:
        return Volume(read_image(path)[None], None, path, "image")
    raise ImageReadError(path, f"unsupported file type '{suffix or '(none)'}'",
                         f"supported: {', '.join(SUPPORTED_SUFFIXES)} and DICOM/slice folders")


def _stack_slices(source: Path, slices: list[np.ndarray], files: list[Path], kind: str) -> Volume:
    first = slices[0]
    for arr, file in zip(slices, files):
        if arr.shape != first.shape:
            raise ImageReadError(file, f"slice shape {arr.shape} differs from the first slice's "
                                 f"{first.shape} ({files[0].name})",
                                 "all slices of a volume must have the same size and channels")
    dtype = np.result_type(*[s.dtype for s in slices])
    data = np.stack([s.astype(dtype, copy=False) for s in slices])
    return Volume(data, None, source, kind, meta={"files": [str(f) for f in files]})


def _read_folder(folder: Path) -> Volume:
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise ImageReadError(folder, "folder is empty", "choose a folder of slices or a DICOM series")
    dicom = [p for p in files if _suffix(p) in DICOM_SUFFIXES or _has_dicom_magic(p)]
    if dicom:
        return read_dicom_series(dicom, source=folder)
    images = [p for p in files if _suffix(p) in IMAGE_SUFFIXES]
    if not images:
        raise ImageReadError(folder, "no images, DICOM or NIfTI files found in the folder",
                             f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    slices = [read_image(p) for p in images]
    return _stack_slices(folder, slices, images, kind="folder")


# ---- NIfTI

def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        voxels = int(np.prod([int(d) for d in img.shape], dtype=object)) if img.shape else 0
        if voxels > MAX_VOLUME_VOXELS:  # a small .nii.gz may claim a gigantic volume
            raise ImageReadError(path, f"volume claims {' x '.join(str(int(d)) for d in img.shape)} voxels, over "
                                 f"the safety limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion",
                                 "crop or resample the volume, or remove it")
        canonical = nib.as_closest_canonical(img)
        data = np.asanyarray(canonical.dataobj)
    except ImageReadError:
        raise
    except Exception as exc:  # nibabel raises several types for corrupt/truncated files
        raise ImageReadError(path, f"unreadable or truncated NIfTI ({type(exc).__name__}: {exc})",
                             "re-copy or re-export the file") from None
    meta: dict[str, Any] = {"modality": None, "source_affine": np.asarray(img.affine, dtype=float),
                            "source_shape": tuple(int(s) for s in img.shape)}
    if data.dtype.names is not None:
        raise ImageReadError(path, "structured (e.g. RGB) NIfTI data is not supported",
                             "save a scalar volume")
    if data.ndim == 2:
        data = data[:, :, None]
    elif data.ndim == 4:
        meta["note"] = f"4D volume with {data.shape[3]} frames; loaded frame 0"
        meta["frames"] = int(data.shape[3])
        data = data[..., 0]
    elif data.ndim > 4 or data.ndim < 2:
        raise ImageReadError(path, f"{data.ndim}D NIfTI data of shape {data.shape} is not a 3D volume",
                             "save a 2D, 3D or 4D (time) volume")
    slope = img.dataobj.slope if hasattr(img.dataobj, "slope") else 1.0
    inter = img.dataobj.inter if hasattr(img.dataobj, "inter") else 0.0
    meta["rescale_applied"] = bool(slope not in (1.0, None) or inter not in (0.0, None))
    # canonical (x=R, y=A, z=S) -> (z, y, x) with rows running anterior->posterior and columns
    # right->left, the radiological display DICOM uses.
    zyx = np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))
    if not zyx.dtype.isnative:  # big-endian Analyze-era files: native order for numpy/torch/Qt
        zyx = zyx.astype(zyx.dtype.newbyteorder("="))
    nx, ny, _ = data.shape
    to_canonical = np.array([[0, 0, -1, nx - 1],   # x_c = nx-1-col
                             [0, -1, 0, ny - 1],   # y_c = ny-1-row
                             [1, 0, 0, 0],         # z_c = z
                             [0, 0, 0, 1]], dtype=float)
    affine = np.asarray(canonical.affine, dtype=float) @ to_canonical
    zooms = canonical.header.get_zooms()[:3]
    spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0])) if len(zooms) == 3 else None
    return Volume(zyx, spacing, path, "nifti", affine=affine, meta=meta)


# ---- DICOM

def _dcmread(path: Path, header_only: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=header_only)
    except InvalidDicomError:
        raise ImageReadError(path, "not a DICOM file (no DICOM header)",
                             "remove it from the folder or choose the right file") from None
    except Exception as exc:  # truncated headers raise EOFError/struct.error/OSError...
        raise ImageReadError(path, f"unreadable or truncated DICOM ({type(exc).__name__}: {exc})",
                             "re-copy or re-export the file") from None


def _is_seg(ds: Any) -> bool:
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS_UID or ds.get("Modality") == "SEG"


def read_dicom_header(path: str | os.PathLike) -> Any:
    """The pydicom dataset of a file without its pixel data (cheap: for scanning folders)."""
    return _dcmread(Path(path), header_only=True)


def is_dicom_seg(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable DICOM Segmentation object."""
    path = Path(path)
    if not is_dicom_file(path):
        return False
    try:
        return _is_seg(_dcmread(path, header_only=True))
    except ImageReadError:
        return False


def _functional_item(ds: Any, sequence: str, frame: int) -> Any:
    """Item of a functional-group sequence for ``frame`` (per-frame first, then shared), or None."""
    for groups_name, index in (("PerFrameFunctionalGroupsSequence", frame),
                               ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_name)
        if groups is not None and len(groups) > index:
            seq = groups[index].get(sequence)
            if seq is not None and len(seq):
                return seq[0]
    return None


def _pixels(ds: Any, path: Path) -> np.ndarray:
    too_big = too_many_dicom_pixels(ds)
    if too_big:
        raise ImageReadError(path, too_big, "the file is corrupt or not a real scan; re-export it, or split a "
                             "genuine giant series into smaller files")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        reason = str(exc)
        hint = "re-copy or re-export the file"
        if "less than expected" in reason or "truncated" in reason.lower():
            reason = f"pixel data is truncated ({reason})"
        elif "decod" in reason.lower() or "plugin" in reason.lower() or "handler" in reason.lower():
            hint = "the compression needs an extra decoder (e.g. pip install pylibjpeg) or decompress it"
        raise ImageReadError(path, f"cannot decode DICOM pixel data: {reason}", hint) from None
    return arr


def _frame_count(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _geometry(ds: Any, frame: int) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float] | None]:
    """(position, orientation(6), pixel spacing (row, col)) of a frame, from top level or groups."""
    pos = ds.get("ImagePositionPatient")
    ori = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    if pos is None:
        item = _functional_item(ds, "PlanePositionSequence", frame)
        pos = item.get("ImagePositionPatient") if item is not None else None
    if ori is None:
        item = _functional_item(ds, "PlaneOrientationSequence", frame)
        ori = item.get("ImageOrientationPatient") if item is not None else None
    if spacing is None:
        item = _functional_item(ds, "PixelMeasuresSequence", frame)
        spacing = item.get("PixelSpacing") if item is not None else None
    pos_a = np.array([float(v) for v in pos]) if pos is not None and len(pos) == 3 else None
    ori_a = np.array([float(v) for v in ori]) if ori is not None and len(ori) == 6 else None
    sp = (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None
    return pos_a, ori_a, sp


def _rescale(ds: Any, frame: int) -> tuple[float, float]:
    slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and inter is None:
        item = _functional_item(ds, "PixelValueTransformationSequence", frame)
        if item is not None:
            slope, inter = item.get("RescaleSlope"), item.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0,
            float(inter) if inter not in (None, "") else 0.0)


def _apply_rescale(arr: np.ndarray, slope: float, inter: float) -> np.ndarray:
    if slope == 1.0 and inter == 0.0:
        return arr
    if float(slope).is_integer() and float(inter).is_integer():
        return (arr.astype(np.int32) * int(slope) + int(inter)).astype(
            np.int16 if arr.dtype.itemsize <= 2 and abs(slope) == 1 else np.int32)
    return arr.astype(np.float32) * np.float32(slope) + np.float32(inter)


def _frames_of(ds: Any, path: Path) -> list[np.ndarray]:
    """Frames of one DICOM image as 2D grey or RGB arrays, rescaled."""
    arr = _pixels(ds, path)
    n = _frame_count(ds)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if n == 1:
        arr = arr[None]
    if spp == 1 and arr.ndim != 3 or spp == 3 and arr.ndim != 4:
        raise ImageReadError(path, f"unexpected pixel array shape {arr.shape} for {n} frame(s)",
                             "the file's header disagrees with its pixel data; re-export it")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if spp == 3 and photometric.startswith("YBR") and arr.dtype == np.uint8:
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric == "PALETTE COLOR":  # indices into a colour table: show the colours
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageReadError(path, f"cannot apply the DICOM palette ({exc})", "re-export as RGB") from None
        if arr.dtype != np.uint8:  # 16-bit LUT entries
            arr = (arr >> 8).astype(np.uint8)
        spp = 3
    frames = []
    for i in range(arr.shape[0]):
        frame = arr[i]
        if spp == 1:
            slope, inter = _rescale(ds, i)
            frame = _apply_rescale(frame, slope, inter)
            if photometric == "MONOCHROME1":  # inverted grey: bright = low value
                frame = frame.max() + frame.min() - frame
        frames.append(frame)
    return frames


def _dicom_meta(ds: Any) -> dict[str, Any]:
    slope, inter = _rescale(ds, 0)
    return {
        "modality": str(ds.get("Modality", "")) or None,
        "window": window_from_dicom(ds),
        "rescale_applied": (slope, inter) != (1.0, 0.0),
        "rescale": (slope, inter),
        "series_uid": str(ds.get("SeriesInstanceUID", "")) or None,
        "study_uid": str(ds.get("StudyInstanceUID", "")) or None,
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")) or None,
        "series_description": str(ds.get("SeriesDescription", "")).strip() or None,
        "series_number": str(ds.get("SeriesNumber", "")) or None,
        "photometric": str(ds.get("PhotometricInterpretation", "")) or None,
    }


def _affine_lps_to_ras(origin: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray,
                       slice_step: np.ndarray, row_spacing: float, col_spacing: float) -> np.ndarray:
    """Affine from (z, y, x) indices to RAS mm, from DICOM's LPS geometry."""
    aff = np.eye(4)
    aff[:3, 0] = slice_step
    aff[:3, 1] = col_dir * row_spacing  # moving down one row follows the column direction cosine
    aff[:3, 2] = row_dir * col_spacing
    aff[:3, 3] = origin
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS -> RAS
    return flip @ aff


def _read_dicom_file(path: Path) -> Volume:
    ds = _dcmread(path)
    if _is_seg(ds):
        raise ImageReadError(path, "is a DICOM SEG (a segmentation), not an image",
                             "open it as a mask (read_dicom_seg) next to its image series")
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(path, f"DICOM without pixel data (modality {ds.get('Modality', '?')})",
                             "choose an image file of the series")
    frames = _frames_of(ds, path)
    data = np.stack(frames)
    meta = _dicom_meta(ds)
    meta["files"] = [str(path)]
    if len(frames) == 1:
        meta["sop_instance_uids"] = [str(ds.get("SOPInstanceUID", ""))]
    spacing, affine, positions = None, None, []
    n = len(frames)
    geoms = [_geometry(ds, i) for i in range(n)]
    pos0, ori, px = geoms[0]
    if ds.get("GridFrameOffsetVector") is not None and pos0 is not None:  # RT dose style
        offsets = [float(v) for v in ds.GridFrameOffsetVector]
        if ori is not None:
            normal = np.cross(ori[:3], ori[3:])
            positions = [pos0 + normal * off for off in offsets[:n]]
    elif all(g[0] is not None for g in geoms):
        positions = [g[0] for g in geoms]
    if positions and ori is not None and px is not None:
        order, step, dz = _order_by_position(positions, ori)
        data = data[order]
        positions = [positions[i] for i in order]
        meta["positions"] = [p.tolist() for p in positions]
        dz = dz or _thickness(ds)
        spacing = (dz, px[0], px[1]) if dz else None
        if step is None and dz:
            step = np.cross(ori[:3], ori[3:]) * dz
        if step is not None:
            affine = _affine_lps_to_ras(positions[0], ori[:3], ori[3:], step, px[0], px[1])
    elif px is not None:
        dz = _thickness(ds)
        spacing = (dz, px[0], px[1]) if dz else None
    if n > 1:
        meta["frames"] = n
    return Volume(data, spacing, path, "dicom", affine=affine, meta=meta)


def _thickness(ds: Any) -> float | None:
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        value = _first_number(ds.get(key))
        if value:
            return abs(value)
    item = _functional_item(ds, "PixelMeasuresSequence", 0)
    if item is not None:
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            value = _first_number(item.get(key))
            if value:
                return abs(value)
    return None


def _order_by_position(positions: list[np.ndarray], ori: np.ndarray
                       ) -> tuple[list[int], np.ndarray | None, float | None]:
    """Sort slices along the slice normal; return order, mean step vector and slice spacing."""
    normal = np.cross(ori[:3], ori[3:])
    dist = np.array([float(np.dot(p, normal)) for p in positions])
    order = list(np.argsort(dist, kind="stable"))
    if len(positions) < 2:
        return order, None, None
    sorted_pos = np.array([positions[i] for i in order])
    diffs = np.diff(dist[order])
    dz = float(np.median(diffs)) if len(diffs) else None
    if not dz or dz <= 0:
        return order, None, None
    step = (sorted_pos[-1] - sorted_pos[0]) / (len(order) - 1)
    return order, step, dz


def read_dicom_series(files: Iterable[str | os.PathLike], source: str | os.PathLike | None = None
                      ) -> Volume:
    """Read DICOM files as one series: group by SeriesInstanceUID, keep the largest image series,
    sort by ImagePositionPatient along the slice normal (InstanceNumber when positions are
    missing), apply RescaleSlope/Intercept. SEG objects and non-DICOM files are listed in meta."""
    files = [Path(f) for f in files]
    source = Path(source) if source is not None else (files[0].parent if files else Path("."))
    headers: dict[str, list[tuple[Path, Any]]] = {}
    seg_files: list[str] = []
    skipped: list[str] = []
    for file in files:
        try:
            ds = _dcmread(file, header_only=True)
        except ImageReadError as exc:
            skipped.append(f"{file.name}: {exc.reason}")
            continue
        if _is_seg(ds):
            seg_files.append(str(file))
            continue
        if "SeriesInstanceUID" not in ds and "Rows" not in ds:
            skipped.append(f"{file.name}: DICOM without an image (e.g. a report or DICOMDIR)")
            continue
        headers.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    if not headers:
        reason = "no readable DICOM image series"
        if seg_files:
            reason += f" (only {len(seg_files)} SEG object(s))"
        raise ImageReadError(source, reason, "; ".join(skipped[:3]) or "choose the folder of the image series")
    series_uid, members = max(headers.items(), key=lambda kv: (
        sum(_frame_count(ds) for _, ds in kv[1]), kv[0]))
    meta_series = [{"series_uid": uid, "files": len(m),
                    "description": str(m[0][1].get("SeriesDescription", "")),
                    "modality": str(m[0][1].get("Modality", ""))} for uid, m in headers.items()]
    if len(members) == 1:
        vol = _read_dicom_file(members[0][0])
        vol.source = source
        vol.kind = "dicom"
    else:
        vol = _read_single_frame_series(members, source)
    vol.meta["series"] = meta_series
    vol.meta["seg_files"] = seg_files
    vol.meta["skipped_files"] = skipped
    if len(headers) > 1:
        described = str(members[0][1].get("SeriesDescription", "")).strip()
        vol.meta["note"] = (f"{source.name} holds {len(headers)} series; loaded the largest "
                            f"({repr(described) if described else 'unnamed'}, {vol.n_slices} slices)")
    return vol


def _read_single_frame_series(members: list[tuple[Path, Any]], source: Path) -> Volume:
    claimed = sum(math.prod(_rows_cols(ds)) * _frame_count(ds) for _, ds in members)
    if claimed > MAX_VOLUME_VOXELS:  # each file may be small; together they must fit too
        raise ImageReadError(source, f"the series claims {claimed / 1e9:.1f} billion pixels in {len(members)} "
                             f"files, over the safety limit of {MAX_VOLUME_VOXELS / 1e9:.1f} billion",
                             "split the series into smaller folders, or remove files that do not belong to it")
    geoms = [_geometry(ds, 0) for _, ds in members]
    ori = geoms[0][1]
    px = geoms[0][2]
    have_pos = all(g[0] is not None for g in geoms) and ori is not None
    if have_pos:
        order, step, dz = _order_by_position([g[0] for g in geoms], ori)
        dist = [float(np.dot(geoms[i][0], np.cross(ori[:3], ori[3:]))) for i in order]
        dup = [members[order[i]][0].name for i in range(1, len(order)) if abs(dist[i] - dist[i - 1]) < 1e-4]
        if dup:
            raise ImageReadError(source, f"{len(dup)} slice(s) share a position with another slice "
                                 f"(e.g. {dup[0]}): several series or echoes mixed under one series UID",
                                 "split the series into separate folders")
    else:
        order = sorted(range(len(members)), key=lambda i: (int(members[i][1].get("InstanceNumber") or 0),
                                                           natural_key(members[i][0].name)))
        step, dz = None, None
    slices, files, uids = [], [], []
    ref_shape = None
    for i in order:
        file, _ = members[i]
        ds = _dcmread(file)
        frame = _frames_of(ds, file)[0]
        if ref_shape is None:
            ref_shape = frame.shape
            ref_name = file.name
        elif frame.shape != ref_shape:
            raise ImageReadError(file, f"slice shape {frame.shape} differs from {ref_name}'s {ref_shape}",
                                 "a series must have one slice size; remove the odd file")
        slices.append(frame)
        files.append(file)
        uids.append(str(ds.get("SOPInstanceUID", "")))
    dtype = np.result_type(*[s.dtype for s in slices])
    data = np.stack([s.astype(dtype, copy=False) for s in slices])
    first = _dcmread(files[0], header_only=True)
    meta = _dicom_meta(first)
    meta["files"] = [str(f) for f in files]
    meta["sop_instance_uids"] = uids
    if not have_pos:
        meta["note"] = "slices have no ImagePositionPatient; ordered by InstanceNumber"
    spacing = affine = None
    if have_pos:
        positions = [geoms[i][0] for i in order]
        meta["positions"] = [p.tolist() for p in positions]
        if px is not None and dz:
            spacing = (dz, px[0], px[1])
            affine = _affine_lps_to_ras(positions[0], ori[:3], ori[3:], step, px[0], px[1])
    elif px is not None:
        dz = _thickness(first)
        spacing = (dz, px[0], px[1]) if dz else None
    return Volume(data, spacing, source, "dicom", affine=affine, meta=meta)


# ---- DICOM SEG

@dataclass
class DicomSeg:
    """A decoded DICOM SEG: ``labels[z]`` holds segment numbers (0 = background) per slice.

    ``names[k]`` names label ``k`` (``names[0] == 'background'``). ``positions[z]`` (LPS mm) and
    ``source_uids[z]`` (referenced image SOP Instance UIDs) let an importer put each slice on the
    matching slice of its image series.
    """

    labels: np.ndarray
    names: list[str]
    positions: list[list[float] | None]
    source_uids: list[str | None]
    referenced_series_uid: str | None
    segmentation_type: str
    spacing: tuple[float, float, float] | None
    warnings: list[str]


def read_dicom_seg(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Labels ``[Z, H, W]`` uint8 and segment names (index = label value, 0 = 'background').

    Overlapping segments: the higher segment number wins. FRACTIONAL segments count where the
    value is at least half of MaximumFractionalValue.
    """
    seg = read_dicom_seg_full(path)
    return seg.labels, seg.names


def read_dicom_seg_full(path: str | os.PathLike) -> DicomSeg:
    """Like :func:`read_dicom_seg`, plus where each slice lies (for aligning with the image series)."""
    path = Path(path)
    _require_file(path)
    ds = _dcmread(path)
    if not _is_seg(ds):
        raise ImageReadError(path, f"not a DICOM SEG (modality {ds.get('Modality', '?')})",
                             "choose the segmentation object, or use read_volume for images")
    seg_type = str(ds.get("SegmentationType", "BINARY")).upper()
    segments = ds.get("SegmentSequence") or []
    numbers = [int(s.SegmentNumber) for s in segments]
    if any(n < 1 or n > 255 for n in numbers):
        raise ImageReadError(path, f"segment numbers {numbers} do not fit 1..255", "renumber the segments")
    names = ["background"] + [""] * (max(numbers) if numbers else 0)
    for s in segments:
        names[int(s.SegmentNumber)] = str(s.get("SegmentLabel", "") or f"segment {int(s.SegmentNumber)}")
    for k in range(1, len(names)):
        names[k] = names[k] or f"segment {k}"
    pixels = _pixels(ds, path)
    if pixels.ndim == 2:
        pixels = pixels[None]
    n_frames = pixels.shape[0]
    warnings: list[str] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) and len(per_frame) != n_frames:
        warnings.append(f"header describes {len(per_frame)} frames but the pixel data holds "
                        f"{n_frames}; used the first {min(n_frames, len(per_frame))}")
    if seg_type == "FRACTIONAL":
        max_value = float(ds.get("MaximumFractionalValue") or 255)
        on = pixels >= max_value / 2.0
    elif seg_type == "BINARY":
        on = pixels > 0
    else:
        raise ImageReadError(path, f"unknown SegmentationType '{seg_type}'", "expected BINARY or FRACTIONAL")
    frame_segment, frame_pos, frame_uid = [], [], []
    _, ori, px = _geometry(ds, 0)
    for i in range(n_frames):
        ident = _functional_item(ds, "SegmentIdentificationSequence", i)
        if ident is None:
            if len(numbers) == 1:
                number = numbers[0]
            else:
                raise ImageReadError(path, f"frame {i + 1} has no Segment Identification",
                                     "the SEG is incomplete; re-export it")
        else:
            number = int(ident.ReferencedSegmentNumber)
        if number not in numbers:
            raise ImageReadError(path, f"frame {i + 1} refers to segment {number}, which is not in "
                                 f"the SegmentSequence {numbers}", "re-export the SEG")
        frame_segment.append(number)
        item = _functional_item(ds, "PlanePositionSequence", i) if len(per_frame) > i else None
        pos = item.get("ImagePositionPatient") if item is not None else None
        frame_pos.append(tuple(round(float(v), 4) for v in pos) if pos is not None else None)
        frame_uid.append(_frame_source_uid(ds, i) if len(per_frame) > i else None)
    # one output slice per distinct position (segments of one slice share it)
    key_of: list[Any]
    if all(p is not None for p in frame_pos):
        normal = np.cross(ori[:3], ori[3:]) if ori is not None else np.array([0.0, 0.0, 1.0])
        keys = sorted(set(frame_pos), key=lambda p: (float(np.dot(p, normal)), p))
        key_of = frame_pos
    elif all(frame_uid):
        keys = list(dict.fromkeys(frame_uid))
        key_of = frame_uid
    elif len(numbers) == 1:  # one segment: frame k is slice k
        keys = key_of = list(range(n_frames))
    else:
        raise ImageReadError(path, "frames carry neither positions nor source image references",
                             "cannot tell which slice each frame belongs to; re-export the SEG")
    index = {k: z for z, k in enumerate(keys)}
    labels = np.zeros((len(keys),) + pixels.shape[1:3], dtype=np.uint8)
    for i in sorted(range(n_frames), key=lambda i: frame_segment[i]):  # higher number wins
        labels[index[key_of[i]]][on[i]] = frame_segment[i]
    positions: list[list[float] | None] = []
    uids: list[str | None] = []
    for k in keys:
        first = key_of.index(k)
        positions.append(list(frame_pos[first]) if frame_pos[first] is not None else None)
        uids.append(frame_uid[first])
    ref_series = None
    refs = ds.get("ReferencedSeriesSequence")
    if refs:
        ref_series = str(refs[0].get("SeriesInstanceUID", "")) or None
    dz = _thickness(ds)
    spacing = (dz, px[0], px[1]) if dz and px else None
    return DicomSeg(labels, names, positions, uids, ref_series, seg_type, spacing, warnings)


def _frame_source_uid(ds: Any, frame: int) -> str | None:
    item = _functional_item(ds, "DerivationImageSequence", frame)
    if item is None:
        return None
    src = item.get("SourceImageSequence")
    if not src:
        return None
    uid = src[0].get("ReferencedSOPInstanceUID")
    return str(uid) if uid else None


# ------------------------------------------------------------------------------------------ writing

def write_mask_png(path: str | os.PathLike, labels2d: np.ndarray) -> Path:
    """Write class ids as a single-channel 8-bit PNG, atomically (temp file + rename)."""
    from PIL import Image

    path = Path(path)
    arr = np.asarray(labels2d)
    if arr.ndim != 2:
        raise ValueError(f"{path}: a mask must be 2D [H, W], got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        if arr.dtype.kind == "f" and np.all(np.mod(arr[np.isfinite(arr)], 1) == 0) and np.isfinite(arr).all():
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{path}: mask values must be integer class ids, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{path}: mask values {int(arr.min())}..{int(arr.max())} do not fit 0..255 "
                         "(one byte per class id)")
    img = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)))  # 2D uint8 -> mode 'L'
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_nifti_like(path: str | os.PathLike, labels_zyx: np.ndarray, reference: Volume) -> Path:
    """Write a label volume as NIfTI in the reference's space, atomically.

    A NIfTI reference gets the mask in its own voxel grid, orientation and affine (so the pair
    lines up voxel for voxel in any tool, nnU-Net included). Any other reference with a known
    ``affine`` (e.g. a DICOM series) gets a NIfTI whose affine places the ``(z, y, x)`` grid in
    the same RAS space.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    labels = np.asarray(labels_zyx)
    if labels.shape != reference.data.shape[:3]:
        raise ValueError(f"{path}: label volume shape {labels.shape} does not match the reference "
                         f"{reference.source} shape {reference.data.shape[:3]} (z, y, x)")
    if labels.dtype.kind not in "biu" or (labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"{path}: labels must be integer class ids in 0..255")
    labels = labels.astype(np.uint8)
    if reference.kind == "nifti" and "source_affine" in reference.meta:
        canonical = np.transpose(labels, (2, 1, 0))[::-1, ::-1, :]
        src_affine = np.asarray(reference.meta["source_affine"], dtype=float)
        src_ornt = nib.orientations.io_orientation(src_affine)
        ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
        back = nib.orientations.ornt_transform(ras, src_ornt)
        data_xyz = nib.orientations.apply_orientation(canonical, back)
        affine = src_affine
        src_shape = tuple(reference.meta.get("source_shape", ()))[:3]
        if src_shape and tuple(data_xyz.shape) != src_shape:
            raise ValueError(f"{path}: internal orientation error: {data_xyz.shape} vs {src_shape}")
    elif reference.affine is not None:
        data_xyz = np.transpose(labels, (2, 1, 0))
        perm = np.zeros((4, 4))
        perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (x, y, z) index -> (z, y, x)
        affine = np.asarray(reference.affine, dtype=float) @ perm
    else:
        raise ValueError(f"{path}: the reference {reference.source} has no spatial geometry; "
                         "save the mask as PNG slices instead")
    img = nib.Nifti1Image(np.ascontiguousarray(data_xyz), affine)
    img.header.set_data_dtype(np.uint8)
    img.header.set_intent("label")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii"

    def _write(tmp: Path) -> None:
        named = tmp.with_name(tmp.name + suffix)  # nibabel picks gzip from the suffix
        try:
            nib.save(img, str(named))
            os.replace(named, tmp)
        finally:
            named.unlink(missing_ok=True)

    return atomic_write(path, _write)
