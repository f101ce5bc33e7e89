"""2D images (PNG, JPEG, TIFF, BMP; 8/16-bit, grey/RGB/RGBA/palette) into numpy arrays, and the checks
every reader makes before it decodes anything: a regular, non-empty file, and a pixel count under the
decompression-bomb limit.

``read_image`` returns ``[H, W]`` or ``[H, W, 3]`` in the file's own bit depth; ``read_tiff_pages``
returns every page of a TIFF (``read.read_volume`` stacks them). tifffile and OpenCV are imported inside
the functions that need them, so importing this module costs only numpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.imaging.volume import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, ImageReadError, file_suffix
from medseg_gui.core.output_guard import not_a_regular_file


def require_file(path: Path) -> None:
    """Refuse what is not a readable regular file *before* opening it: opening a FIFO blocks until
    someone writes to it, and reading a device may never end."""
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


def check_pixels(path: Path, width: int, height: int) -> None:
    reason = too_many_pixels(width, height)
    if reason:
        raise ImageReadError(path, reason, "downscale or crop the image, or remove it")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a 2D PNG/JPEG/TIFF/BMP into ``[H, W]`` or ``[H, W, 3]``, keeping its bit depth.

    RGBA/LA lose their alpha (masks and scans never mean transparency), palette images keep their
    indices (palette PNG masks store class ids that way), CMYK/YCbCr become RGB, 16-bit stays
    uint16 and float stays float32 (use :func:`to_uint8` to display them). Multi-page TIFFs return
    their first page (``read_volume`` reads all pages).
    """
    path = Path(path)
    require_file(path)
    suffix = file_suffix(path)
    if suffix in DICOM_SUFFIXES or suffix in NIFTI_SUFFIXES:
        raise ImageReadError(path, "is a volume format, not a 2D image", "open it with read_volume")
    if suffix in (".tif", ".tiff"):
        return read_tiff_pages(path)[0]
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
            check_pixels(path, *im.size)
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
    check_pixels(path, int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    raw = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3:
        raise ImageReadError(path, "unreadable or truncated 16-bit colour PNG",
                             "re-copy or re-export the file")
    img = img[:, :, :3][:, :, ::-1]  # BGR(A) -> RGB, alpha dropped
    return np.ascontiguousarray(img)


def read_tiff_pages(path: Path) -> list[np.ndarray]:
    """All pages of a TIFF as 2D/RGB arrays (tifffile keeps 16-bit and float exactly)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:  # sizes from the headers first: a tiny file may claim a gigantic page
                shape = tuple(getattr(page, "shape", ()) or ())
                spatial = [d for d in shape if d > 4] or [1]
                check_pixels(path, int(np.prod(spatial[:2])), 1)
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
