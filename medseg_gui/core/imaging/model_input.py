"""What a model sees: any slice or volume as the uint8 the training loaders produce.

Imaging, not engine: the viewer prepares the model input of an open volume before any model runs,
and the prediction (``core.engine.inference``) applies the same rule, so both live below them.
"""

from __future__ import annotations

import numpy as np

from medseg_gui.core.imaging.volume import Volume
from medseg_gui.core.imaging.window import default_window, to_uint8


def slice_to_uint8(image: np.ndarray) -> np.ndarray:
    """A 2D grey/RGB slice of any dtype → uint8, as the training loader decodes a 2D file
    (uint8 unchanged, anything else a per-image percentile window)."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected a 2D grey [H, W] or RGB [H, W, 3] image, got shape {arr.shape}")
    return arr if arr.dtype == np.uint8 else to_uint8(arr)


def volume_to_uint8(volume: Volume) -> np.ndarray:
    """A whole volume → uint8 with one window for all slices, as the volume importer does."""
    if volume.data.dtype == np.uint8:
        return volume.data
    if volume.kind in ("image", "folder"):  # 2D files: each slice windowed on its own, like the loader
        return np.stack([slice_to_uint8(s) for s in volume.data])
    return to_uint8(volume.data, default_window(volume))
