"""Fast decoding of dataset files for training and validation (images to uint8, masks to class ids).

Why a separate module from ``core/imaging/``: this is the hot path of the training loader (one call
per sample per epoch), so it uses OpenCV's PNG decoder on raw bytes (``np.fromfile`` + ``imdecode``
also copes with non-ASCII Windows paths) and does only what a 2D training sample needs. The viewer and
the importers use ``core/imaging/`` for the wider set of formats (DICOM, NIfTI, multi-page TIFF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg_gui.core.imaging.images import too_many_pixels
from medseg_gui.core.imaging.window import to_uint8
from medseg_gui.core.output_guard import not_a_regular_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")

# Percentile window used to bring 16-bit (and float) slices to 8 bits per image; the same numbers the
# importers use, so an imported folder and a folder read directly look alike.
WINDOW_PERCENTILES = (0.5, 99.5)


_QUIETED = False


def _quiet_opencv() -> None:
    """Silence OpenCV's own warning log once (a refused file is reported by us, with its name)."""
    global _QUIETED
    if not _QUIETED:
        import cv2

        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # older builds without the logging module
            pass
        _QUIETED = True


class DecodeError(ValueError):
    """A file could not be decoded; the message names the file and the reason."""


def window_to_uint8(array: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """Scale a >8-bit or float image to uint8 with a per-image percentile window.

    MRI intensities have no absolute scale, so a fixed divisor (e.g. /65535) would leave most slices
    nearly black; a robust per-image window keeps contrast without letting one hot pixel dominate.
    Delegates to ``core.imaging.window.to_uint8`` so imported and directly read slices get the same window.
    """
    if array.dtype == np.uint8:
        return array
    return to_uint8(array, percentiles=percentiles)


def _imdecode(path: Path, flags: int) -> np.ndarray | None:
    """OpenCV decode of the file's bytes; None when OpenCV refuses it (the caller retries with PIL)."""
    import cv2

    _quiet_opencv()

    problem = not_a_regular_file(path)  # before opening: reading a FIFO would block the loader
    if problem:
        raise DecodeError(f"{path}: {problem}")
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw.size == 0:
        raise DecodeError(f"{path}: file is empty")
    _refuse_bomb(path, raw)
    return cv2.imdecode(raw, flags)


def _refuse_bomb(path: Path, raw: np.ndarray) -> None:
    """Refuse a file whose header claims a gigantic image before OpenCV allocates it (a PNG's size is
    in its first 24 bytes; other formats ask PIL, which reads only the header)."""
    head = raw[:24].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 24:
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    else:
        import io
        import warnings

        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(raw.tobytes())) as im:
                    width, height = im.size
        except Image.DecompressionBombError:
            raise DecodeError(f"{path}: image is over the decoding safety limit (a possible decompression "
                              "bomb)") from None
        except Exception:  # not readable by PIL either: OpenCV (and the caller's fallback) will say why
            return
    reason = too_many_pixels(width, height)
    if reason:
        raise DecodeError(f"{path}: {reason}")


def read_image(path: str | Path, channels: int = 1) -> np.ndarray:
    """Decode an image to uint8 ``[H, W]`` (channels=1) or ``[H, W, 3]`` RGB (channels=3).

    16-bit and float images are windowed per image; alpha is dropped; colour images asked for one
    channel are converted with the usual luma weights (exact for grey stored as RGB).
    """
    import cv2

    path = Path(path)
    img = _imdecode(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        img = _read_with_pil(path)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = window_to_uint8(img)
    if channels == 1 and img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    elif channels == 3 and img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def _read_with_pil(path: Path) -> np.ndarray:
    """Fallback for what OpenCV cannot decode (e.g. some TIFF flavours); RGB order, mode-preserving."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGB" if im.mode not in ("LA", "1") else "L")
            arr = np.asarray(im)
    except Exception as exc:  # PIL raises many types for corrupt files
        raise DecodeError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    return arr


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask to a 2D integer array of class ids, without any colour conversion.

    Palette PNGs keep their indices (OpenCV would expand them to colours), so they go through PIL.
    A mask with colour channels is returned as ``[H, W, C]`` so the caller can reject it by name.
    """
    import cv2

    path = Path(path)
    arr = _imdecode(path, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim == 3:
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode == "1":
                    im = im.convert("L")
                arr = np.asarray(im)
        except Exception as exc:
            raise DecodeError(f"{path}: not a readable mask ({type(exc).__name__}: {exc})") from None
    return arr
