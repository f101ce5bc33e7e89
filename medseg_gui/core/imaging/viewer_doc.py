"""What the mask viewer shows, without Qt: the image/volume, its window, the prediction, the ground
truth, overlay settings, and the numbers derived from them (hover readout, Dice/IoU).

The viewer's widgets only render what this object returns and call its methods with the user's
intents, so every behaviour here is testable headless and the widgets stay thin.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg_gui.core.config import CLASS_PALETTE, colours_for
from medseg_gui.core.imaging.dicom import is_dicom_file, is_dicom_seg, read_dicom_seg
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.runs import BUNDLE_DIR
from medseg_gui.core.imaging.read import read_volume
from medseg_gui.core.imaging.volume import IMAGE_SUFFIXES, ImageReadError, Volume, natural_key
from medseg_gui.core.imaging.window import default_window, percentile_window, to_uint8
from medseg_gui.core.imaging.model_input import volume_to_uint8
from medseg_gui.core.imaging.overlay import FILLED, MODES, error_overlay, label_overlay
from medseg_gui.core.imaging.seg_metrics import ClassScores, class_scores, confusion_matrix, scores_from_confusion
from medseg_gui.core.imaging.truth import ClassCountError, check_truth_classes

#: Radiology window presets (centre, width) in HU.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "CT soft tissue": (40.0, 400.0),
    "CT lung": (-600.0, 1500.0),
    "CT bone": (400.0, 1800.0),
}
AUTO = "Auto (percentile)"
FILE_DEFAULT = "File default"

#: What the overlay shows: the prediction, the ground truth, an error map, or both side by side.
SHOW_PREDICTION = "prediction"
SHOW_TRUTH = "truth"
SHOW_ERRORS = "errors"
SIDE_BY_SIDE = "side by side"
COMPARE_MODES = (SHOW_PREDICTION, SHOW_TRUTH, SHOW_ERRORS, SIDE_BY_SIDE)
#: The modes that draw the ground truth: offered only while one is loaded for the open image (a mode
#: carried over from the last image would draw nothing on the next one).
TRUTH_MODES = (SHOW_TRUTH, SHOW_ERRORS, SIDE_BY_SIDE)

class TruthError(ValueError):
    """A ground truth that does not fit the open image; the message names the file and the mismatch."""


@dataclass
class HoverInfo:
    x: int
    y: int
    value: str
    predicted: str | None = None
    probability: float | None = None
    truth: str | None = None

    def text(self) -> str:
        parts = [f"x {self.x}  y {self.y}", f"value {self.value}"]
        if self.predicted is not None:
            prob = "" if self.probability is None else f" ({self.probability:.0%})"
            parts.append(f"class {self.predicted}{prob}")
        if self.truth is not None:
            parts.append(f"truth {self.truth}")
        return "   ".join(parts)


@dataclass
class ViewerDocument:
    volume: Volume | None = None
    name: str = ""
    slice_index: int = 0
    window: tuple[float, float] = (127.5, 255.0)
    window_preset: str = FILE_DEFAULT
    # model metadata (from the bundle) — names/colours drive the legend
    model_source: str | None = None
    class_names: list[str] = field(default_factory=list)
    class_colors: list[str] = field(default_factory=list)
    # prediction [Z, H, W] and which slices hold one
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None
    predicted: np.ndarray | None = None
    # ground truth [Z, H, W]
    truth: np.ndarray | None = None
    truth_source: str | None = None
    truth_names: list[str] | None = None
    # overlay settings
    opacity: float = 0.5
    mode: str = FILLED
    visible: list[bool] = field(default_factory=list)
    compare: str = SHOW_PREDICTION
    # a folder of separate 2D images (not one volume): its files, and which one is open
    image_list: list[Path] = field(default_factory=list)
    image_index: int = 0
    _model_input: np.ndarray | None = field(default=None, repr=False)
    _range: tuple[float, float] = (0.0, 255.0)

    # ----- opening ------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike) -> Volume:
        """Read ``path`` (image, slice folder, DICOM, NIfTI) and show it; prediction and truth reset.

        A folder of 2D images that are not slices of one volume (see :func:`folder_layout`) opens as
        a list: its first image is shown and :meth:`select_image` steps through the others.
        """
        path = Path(path)
        if path.is_dir():
            kind, files = folder_layout(path)
            if kind == IMAGE_LIST:
                volume = read_volume(files[0])
                self.image_list, self.image_index = files, 0
                return self.set_volume(volume, keep_list=True)
        return self.set_volume(read_volume(path))

    def select_image(self, index: int) -> Volume:
        """Show image ``index`` of the open image list (its prediction and truth start empty)."""
        if not self.image_list:
            raise ValueError("no image list is open")
        index = int(min(max(0, index), len(self.image_list) - 1))
        volume = read_volume(self.image_list[index])
        self.image_index = index
        return self.set_volume(volume, keep_list=True)

    @property
    def is_image_list(self) -> bool:
        return bool(self.image_list)

    def current_file(self) -> str | None:
        """The file behind the slice on screen (slice folders, DICOM series, image lists), if known."""
        if self.volume is None:
            return None
        if self.image_list:
            return self.image_list[self.image_index].name
        files = self.volume.meta.get("files") or []
        if len(files) == self.volume.n_slices and len(set(files)) == len(files):
            return Path(files[self.slice_index]).name
        return None

    def set_volume(self, volume: Volume, name: str | None = None, *, keep_list: bool = False) -> Volume:
        if not keep_list:
            self.image_list, self.image_index = [], 0
        self.volume = volume
        self.name = name or Path(volume.source).name
        self.slice_index = volume.n_slices // 2
        self.labels = self.confidence = self.predicted = None
        self.truth = self.truth_source = self.truth_names = None
        self.compare = SHOW_PREDICTION
        self._model_input = None
        finite = volume.data[np.isfinite(volume.data)] if volume.data.dtype.kind == "f" else volume.data
        self._range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self.reset_window()
        return volume

    @property
    def is_open(self) -> bool:
        return self.volume is not None

    @property
    def n_slices(self) -> int:
        return self.volume.n_slices if self.volume is not None else 0

    def set_slice(self, z: int) -> int:
        self.slice_index = int(min(max(0, z), max(0, self.n_slices - 1)))
        return self.slice_index

    def step(self, delta: int) -> int:
        return self.set_slice(self.slice_index + delta)

    # ----- window / level -----------------------------------------------------------------------
    @property
    def is_ct(self) -> bool:
        return self.volume is not None and self.volume.meta.get("modality") == "CT"

    @property
    def windowable(self) -> bool:
        """RGB images are shown as they are; grey images of any depth take a window."""
        return self.volume is not None and not self.volume.is_rgb

    def window_presets(self) -> list[str]:
        return [FILE_DEFAULT, AUTO] + list(CT_PRESETS)

    def reset_window(self) -> None:
        self.apply_preset(FILE_DEFAULT)

    def apply_preset(self, name: str) -> tuple[float, float]:
        if self.volume is None:
            return self.window
        if name in CT_PRESETS:
            self.window = CT_PRESETS[name]
        elif name == AUTO:
            self.window = percentile_window(self.volume.data)
        elif name == FILE_DEFAULT:
            if self.volume.data.dtype == np.uint8:
                self.window = (127.5, 255.0)
            else:
                self.window = default_window(self.volume)
        else:
            raise ValueError(f"unknown window preset {name!r}; choose one of {self.window_presets()}")
        self.window_preset = name
        return self.window

    def set_window(self, centre: float, width: float) -> tuple[float, float]:
        if not (math.isfinite(centre) and math.isfinite(width)) or width <= 0:
            raise ValueError(f"window width must be positive, got centre={centre}, width={width}")
        self.window = (float(centre), float(width))
        self.window_preset = "custom"
        return self.window

    def drag_window(self, dx: float, dy: float) -> tuple[float, float]:
        """Right-drag as in radiology viewers: right widens, left narrows; up raises the level.

        One pixel moves about 1/400 of the image's intensity range, so a drag across the image spans
        the useful range for 8-bit photos and 12-bit CT alike.
        """
        lo, hi = self._range
        step = max(hi - lo, 1.0) / 400.0
        centre, width = self.window
        return self.set_window(centre - dy * step, max(step, width + dx * step))

    @property
    def intensity_range(self) -> tuple[float, float]:
        return self._range

    # ----- pictures -----------------------------------------------------------------------------
    def raw_slice(self, z: int | None = None) -> np.ndarray:
        assert self.volume is not None
        return self.volume.data[self.slice_index if z is None else z]

    def display_slice(self, z: int | None = None) -> np.ndarray:
        """uint8 ``[H, W]`` (or RGB) of the slice under the current window."""
        raw = self.raw_slice(z)
        if self.volume is not None and self.volume.is_rgb:
            return raw if raw.dtype == np.uint8 else to_uint8(raw)
        return to_uint8(raw, self.window)

    def model_input(self) -> np.ndarray:
        """The uint8 volume fed to the model (training's windowing, not the display window)."""
        assert self.volume is not None
        if self._model_input is None:
            self._model_input = volume_to_uint8(self.volume)
        return self._model_input

    # ----- model and prediction -----------------------------------------------------------------
    def set_model(self, source: str, class_names: list[str], class_colors: list[str]) -> None:
        """A newly loaded model: checked against a loaded truth, its legend replaces the old one."""
        if self.truth is not None:
            check_truth_classes(self.truth, len(class_names), truth_source=self.truth_source or "ground truth",
                                model_source=source, class_names=class_names, truth_names=self.truth_names)
        if self.model_source != source:
            self.labels = self.confidence = self.predicted = None
        self.model_source = source
        self.class_names = list(class_names)
        self.class_colors = list(class_colors)
        self.visible = [True] * len(class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _ensure_prediction_arrays(self) -> None:
        assert self.volume is not None
        if self.labels is None:
            shape = self.volume.data.shape[:3]
            self.labels = np.zeros(shape, np.uint8)
            self.confidence = np.zeros(shape, np.float16)
            self.predicted = np.zeros(shape[0], bool)

    def set_slice_prediction(self, z: int, labels: np.ndarray, confidence: np.ndarray) -> None:
        self._ensure_prediction_arrays()
        assert self.labels is not None and self.confidence is not None and self.predicted is not None
        self.labels[z] = labels
        self.confidence[z] = confidence
        self.predicted[z] = True

    def set_volume_prediction(self, labels: np.ndarray, confidence: np.ndarray, done: int) -> None:
        self._ensure_prediction_arrays()
        assert self.labels is not None and self.confidence is not None and self.predicted is not None
        self.labels[:done] = labels[:done]
        self.confidence[:done] = confidence[:done]
        self.predicted[:done] = True

    def has_prediction(self, z: int | None = None) -> bool:
        if self.predicted is None:
            return False
        return bool(self.predicted.any() if z is None else self.predicted[z])

    def slice_has_prediction(self) -> bool:
        return self.predicted is not None and bool(self.predicted[self.slice_index])

    # ----- ground truth -------------------------------------------------------------------------
    def load_truth(self, path: str | os.PathLike) -> np.ndarray:
        """A mask PNG (for the current slice of a volume, or a 2D image), a NIfTI/slice folder of the
        same grid, or a DICOM SEG with as many slices as the image. Checked against the model's classes."""

        if self.volume is None:
            raise TruthError("open an image before loading its ground truth")
        path = Path(path)
        names = None
        shape = self.volume.data.shape[:3]
        try:
            if path.is_file() and is_dicom_seg(path):
                data, names = read_dicom_seg(path)
            elif path.is_file() and path.name.lower().endswith((".png", ".bmp", ".tif", ".tiff")) and shape[0] > 1:
                data = read_image(path)
                if data.ndim != 2:
                    raise TruthError(f"{path}: a mask must be single-channel class ids, got shape {data.shape}")
                if data.shape != shape[1:]:
                    raise TruthError(f"{path}: mask is {data.shape[1]}x{data.shape[0]} but the slice is "
                                     f"{shape[2]}x{shape[1]} — choose the mask of this slice")
                full = np.zeros(shape, np.int64) if self.truth is None else self.truth.astype(np.int64)
                full[self.slice_index] = data
                data = full
            else:
                data = read_volume(path).data
        except ImageReadError as exc:
            raise TruthError(str(exc)) from None
        if data.ndim == 4:
            raise TruthError(f"{path}: a ground truth must hold class ids (one channel), not colour")
        if data.dtype.kind == "f":
            if not np.all(np.isfinite(data)) or not np.all(np.mod(data, 1) == 0):
                raise TruthError(f"{path}: mask values must be whole class ids, found fractions")
        if data.shape != shape:
            raise TruthError(f"{path}: ground truth has shape {data.shape} (slices, rows, columns) but the "
                             f"image {self.name} has {shape} — load the mask made for this image")
        if self.num_classes:
            check_truth_classes(data, self.num_classes, truth_source=path, model_source=self.model_source or "",
                                class_names=self.class_names, truth_names=names)
        elif data.size and (data.min() < 0 or data.max() > 255):
            raise TruthError(f"{path}: mask values {int(data.min())}..{int(data.max())} are not class ids 0..255")
        self.truth = data.astype(np.uint8)
        self.truth_source = str(path)
        self.truth_names = names
        if not self.class_names:  # no model yet: a legend from the truth itself
            n = max(int(self.truth.max()) + 1, len(names or []), 2)
            self.class_names = list(names) if names and len(names) == n else (
                ["background"] + [f"class {k}" for k in range(1, n)])
            self.class_colors = colours_for(n)
            self.visible = [True] * n
        return self.truth

    def clear_truth(self) -> None:
        self.truth = self.truth_source = self.truth_names = None
        self.compare = SHOW_PREDICTION

    def compare_modes(self) -> tuple[str, ...]:
        """The Show modes that can draw something now: the truth modes only with a ground truth."""
        return COMPARE_MODES if self.truth is not None else (SHOW_PREDICTION,)

    # ----- overlays -----------------------------------------------------------------------------
    def set_opacity(self, opacity: float) -> None:
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be within 0..1, got {opacity}")
        self.opacity = float(opacity)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"overlay mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def set_visible(self, class_id: int, shown: bool) -> None:
        if not 0 <= class_id < len(self.visible):
            raise ValueError(f"class {class_id} does not exist (0..{len(self.visible) - 1})")
        self.visible[class_id] = bool(shown)

    def set_compare(self, compare: str) -> None:
        if compare not in COMPARE_MODES:
            raise ValueError(f"compare mode must be one of {COMPARE_MODES}, got {compare!r}")
        if compare in TRUTH_MODES and self.truth is None:
            raise ValueError(f"'{compare}' needs a ground truth: load one for {self.name or 'the image'} first")
        self.compare = compare

    def _colours(self) -> list[str]:
        return self.class_colors or list(CLASS_PALETTE)

    def prediction_overlay(self, z: int | None = None) -> np.ndarray | None:
        z = self.slice_index if z is None else z
        if self.labels is None or self.predicted is None or not self.predicted[z]:
            return None
        return label_overlay(self.labels[z], self._colours(), self.opacity, self.mode, self.visible or None)

    def truth_overlay(self, z: int | None = None) -> np.ndarray | None:
        z = self.slice_index if z is None else z
        if self.truth is None:
            return None
        return label_overlay(self.truth[z], self._colours(), self.opacity, self.mode, self.visible or None)

    def error_overlay(self, z: int | None = None) -> np.ndarray | None:
        z = self.slice_index if z is None else z
        if self.truth is None or self.labels is None or self.predicted is None or not self.predicted[z]:
            return None
        return error_overlay(self.labels[z], self.truth[z], max(self.opacity, 0.35), self.visible or None)

    def main_overlay(self, z: int | None = None) -> np.ndarray | None:
        """The overlay of the main view under the current compare mode."""
        if self.compare == SHOW_TRUTH:
            return self.truth_overlay(z)
        if self.compare == SHOW_ERRORS:
            return self.error_overlay(z)
        return self.prediction_overlay(z)

    # ----- readouts -----------------------------------------------------------------------------
    def class_name(self, k: int) -> str:
        return self.class_names[k] if 0 <= k < len(self.class_names) else f"class {k}"

    def hover(self, x: int, y: int) -> HoverInfo | None:
        if self.volume is None:
            return None
        z = self.slice_index
        h, w = self.volume.slice_shape
        if not (0 <= x < w and 0 <= y < h):
            return None
        raw = self.volume.data[z, y, x]
        value = ("(" + ", ".join(_fmt(v) for v in raw) + ")") if np.ndim(raw) else _fmt(raw)
        info = HoverInfo(x=x, y=y, value=value)
        if self.slice_has_prediction():
            assert self.labels is not None and self.confidence is not None
            info.predicted = self.class_name(int(self.labels[z, y, x]))
            info.probability = float(self.confidence[z, y, x])
        if self.truth is not None:
            info.truth = self.class_name(int(self.truth[z, y, x]))
        return info

    def _n_for_scores(self) -> int:
        assert self.truth is not None and self.labels is not None
        return max(self.num_classes, int(self.truth.max()) + 1, int(self.labels.max()) + 1)

    def slice_scores(self, z: int | None = None) -> ClassScores | None:
        z = self.slice_index if z is None else z
        if self.truth is None or self.labels is None or self.predicted is None or not self.predicted[z]:
            return None
        return class_scores(self.labels[z], self.truth[z], self._n_for_scores())

    def volume_scores(self) -> ClassScores | None:
        """Scores over every predicted slice (a cancelled run counts what it finished)."""
        if self.truth is None or self.labels is None or self.predicted is None or not self.predicted.any():
            return None
        n = self._n_for_scores()
        cm = np.zeros((n, n), np.int64)
        for z in np.flatnonzero(self.predicted):
            cm += confusion_matrix(self.labels[z], self.truth[z], n)
        return scores_from_confusion(cm)

    def metrics_rows(self) -> list[dict[str, Any]]:
        """One row per foreground class: name, colour, slice and volume Dice/IoU (None = undefined)."""
        s, v = self.slice_scores(), self.volume_scores()
        rows = []
        for k in range(1, self.num_classes):
            rows.append({"class": self.class_name(k), "colour": self._colours()[k % len(self._colours())],
                         "dice_slice": _val(s.dice[k]) if s is not None else None,
                         "iou_slice": _val(s.iou[k]) if s is not None else None,
                         "dice_volume": _val(v.dice[k]) if v is not None else None,
                         "iou_volume": _val(v.iou[k]) if v is not None else None})
        return rows


IMAGE_LIST = "images"
SLICE_STACK = "volume"


def folder_layout(folder: str | os.PathLike) -> tuple[str, list[Path]]:
    """Whether a folder of 2D images is one volume or a list of separate images, and its image files.

    Why: stacking unrelated pictures (different patients, cases or sizes) into one "volume" shows
    slices that do not belong together and a prediction "per volume" that means nothing. The rule:
    the images are one volume only when they all have the same size and their names differ only in a
    trailing number (``slice_001.png``, ``slice_002.png``, or ``0001.png``, ``0002.png``); names with
    different stems (``case01_3.png``, ``case02_1.png``) or sizes make a list. A folder holding DICOM
    (or no 2D image) returns ``("other", [])``: ``read_volume`` handles it.
    """

    root = Path(folder)
    files = sorted((p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images or any(is_dicom_file(p) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES):
        return "other", []
    if len(images) == 1:
        return SLICE_STACK, images
    stems = {_stem_without_number(p.name) for p in images}
    if len(stems) > 1 or any(not p.stem[-1:].isdigit() for p in images):
        return IMAGE_LIST, images
    sizes = {_image_size(p) for p in images}
    return (SLICE_STACK if len(sizes) == 1 else IMAGE_LIST), images


def _stem_without_number(name: str) -> str:
    """``case01_slice_0003.png`` -> ``case01_slice_`` (the part that names the series)."""
    import re

    stem = Path(name).stem
    return re.sub(r"\d+$", "", stem).lower()


def _image_size(path: Path) -> tuple[Any, ...]:
    """Width, height and mode from the header only (PIL reads no pixels for this)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return (im.size, im.mode)
    except Exception:  # noqa: BLE001 — unreadable: its own size, so the folder opens as a list
        return (str(path),)


def model_display_name(path: str | os.PathLike) -> str:
    """What to call a model: its run folder's name for a run's exported bundle (every run's bundle
    folder is called "bundle", which says nothing), else the folder or file name."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json") or p.is_file():
        p = p.parent
    if p.name == BUNDLE_DIR and p.parent.name:
        return p.parent.name
    return p.name


def _val(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _fmt(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:.4g}"


__all__ = ["ViewerDocument", "HoverInfo", "TruthError", "ClassCountError", "CT_PRESETS", "COMPARE_MODES",
           "SHOW_PREDICTION", "SHOW_TRUTH", "SHOW_ERRORS", "SIDE_BY_SIDE", "TRUTH_MODES", "AUTO", "FILE_DEFAULT",
           "folder_layout", "model_display_name", "IMAGE_LIST", "SLICE_STACK"]
