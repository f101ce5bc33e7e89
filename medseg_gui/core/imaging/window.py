"""Intensities to 8-bit grey for display and training: a percentile window (MR has no absolute scale)
or an explicit window/level (CT in Hounsfield units, or a DICOM's own window), and the window a volume
starts with.
"""

from __future__ import annotations

import numpy as np

from medseg_gui.core.imaging.volume import Volume

#: Percentile window used when no explicit window is given. Same numbers as the training loader's
#: ``core.data.decode.WINDOW_PERCENTILES`` so an imported slice and a directly read one look alike.
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Abdominal soft-tissue window (centre, width) in HU, used for CT that carries no window of its own.
CT_SOFT_TISSUE_WINDOW = (40.0, 400.0)


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
