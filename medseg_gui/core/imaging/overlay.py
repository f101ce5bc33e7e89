"""Label maps → RGBA overlays, error maps and blended pictures (numpy only: the viewer, the CLI and the
benchmark share them, and they are tested without Qt).

Why RGBA and not a blended RGB: the viewer draws the overlay as its own image item above the scan, so
changing the opacity, the mode or a class's visibility re-colours one small array instead of
re-windowing the scan. ``blend`` gives the flattened picture for overlay PNG exports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FILLED = "filled"
CONTOUR = "contour"
MODES = (FILLED, CONTOUR)

# Error-map colours (RGB): correct foreground, false positive, false negative, wrong foreground class.
# Deliberately outside the class palette (config.CLASS_PALETTE starts black/red/green/blue): an error
# map drawn in class colours reads as a prediction. Yellow / magenta / cyan / white stay apart from each
# other and from the default classes, and show on grey scans.
ERROR_COLORS = {
    "tp": (255, 215, 0),
    "fp": (255, 0, 255),
    "fn": (0, 229, 255),
    "wrong": (255, 255, 255),
}
ERROR_LABELS = {"tp": "correct", "fp": "false positive", "fn": "missed (false negative)",
                "wrong": "wrong class"}


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``'#rrggbb'`` → (r, g, b); a clear error for anything else (colours come from user configs)."""
    text = str(colour).strip()
    if len(text) != 7 or not text.startswith("#"):
        raise ValueError(f"colour {colour!r} is not #rrggbb")
    try:
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    except ValueError:
        raise ValueError(f"colour {colour!r} is not #rrggbb") from None


def colour_table(colours: Sequence[str | tuple[int, int, int]], opacity: float = 1.0,
                 visible: Sequence[bool] | None = None, show_background: bool = False) -> np.ndarray:
    """A ``[256, 4]`` uint8 lookup table: class id → RGBA.

    Background (class 0) is transparent unless ``show_background``; hidden classes and ids beyond the
    colour list are transparent, so a stray label never paints in a made-up colour.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    lut = np.zeros((256, 4), np.uint8)
    alpha = int(round(float(opacity) * 255))
    for k, colour in enumerate(list(colours)[:256]):
        rgb = hex_to_rgb(colour) if isinstance(colour, str) else tuple(int(c) for c in colour)
        shown = visible is None or (k < len(visible) and bool(visible[k]))
        if k == 0 and not show_background:
            shown = False
        lut[k, :3] = rgb
        lut[k, 3] = alpha if shown else 0
    return lut


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from one of their 4 neighbours, on the labelled side only.

    Only pixels with a non-zero label are marked, so a contour is drawn inside its region and two
    touching classes each keep their own outline. The image border counts as background.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2D [H, W], got shape {lab.shape}")
    edge = np.zeros(lab.shape, bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[0, :] = edge[-1, :] = True
    edge[:, 0] |= True
    edge[:, -1] |= True
    return edge & (lab != 0)


def label_overlay(labels: np.ndarray, colours: Sequence[str | tuple[int, int, int]], opacity: float = 0.5,
                  mode: str = FILLED, visible: Sequence[bool] | None = None) -> np.ndarray:
    """RGBA ``[H, W, 4]`` uint8 colouring of a class-id map.

    ``mode='contour'`` keeps only the boundary pixels (drawn fully opaque when ``opacity`` > 0, since
    a one-pixel line at half opacity is hard to see); ``visible[k]`` hides class ``k``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2D [H, W], got shape {lab.shape}")
    if lab.dtype.kind not in "biu":
        raise ValueError(f"labels must be integer class ids, got dtype {lab.dtype}")
    if mode not in MODES:
        raise ValueError(f"overlay mode must be one of {MODES}, got {mode!r}")
    idx = np.clip(lab, 0, 255).astype(np.uint8, copy=False)
    if mode == CONTOUR:
        lut = colour_table(colours, 1.0 if opacity > 0 else 0.0, visible)
        rgba = lut[idx]
        rgba[~boundaries(idx), 3] = 0
        return rgba
    return colour_table(colours, opacity, visible)[idx]


def error_categories(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean maps of correct foreground, false positives, misses and foreground-class swaps."""
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth shape {t.shape}")
    p_fg, t_fg = p != 0, t != 0
    return {"tp": p_fg & (p == t), "fp": p_fg & ~t_fg, "fn": ~p_fg & t_fg, "wrong": p_fg & t_fg & (p != t)}


def error_overlay(pred: np.ndarray, truth: np.ndarray, opacity: float = 0.6,
                  visible: Sequence[bool] | None = None) -> np.ndarray:
    """RGBA map of prediction vs truth: yellow correct, magenta false positive, cyan missed, white wrong class.

    ``visible[k]`` limits the map to pixels where prediction or truth is class ``k`` (to inspect one
    organ at a time).
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    cats = error_categories(pred, truth)
    p, t = np.asarray(pred), np.asarray(truth)
    rgba = np.zeros(p.shape + (4,), np.uint8)
    alpha = int(round(float(opacity) * 255))
    for name, mask in cats.items():
        rgba[mask, :3] = ERROR_COLORS[name]
        rgba[mask, 3] = alpha
    if visible is not None:
        shown = np.zeros(256, bool)
        shown[:min(len(visible), 256)] = [bool(v) for v in list(visible)[:256]]
        shown[0] = False
        pi, ti = np.clip(p, 0, 255).astype(np.intp), np.clip(t, 0, 255).astype(np.intp)
        rgba[~(shown[pi] | shown[ti]), 3] = 0
    return rgba


def grey_to_rgb(image_u8: np.ndarray) -> np.ndarray:
    img = np.asarray(image_u8)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 display image, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"expected [H, W] or [H, W, 3], got shape {img.shape}")


def blend(image_u8: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite an RGBA overlay onto a uint8 grey/RGB image → RGB uint8 (for overlay PNGs)."""
    base = grey_to_rgb(image_u8)
    over = np.asarray(rgba)
    if over.shape[:2] != base.shape[:2] or over.ndim != 3 or over.shape[2] != 4:
        raise ValueError(f"overlay shape {over.shape} does not fit image shape {base.shape}")
    a = over[:, :, 3:4].astype(np.uint16)
    out = (base.astype(np.uint16) * (255 - a) + over[:, :, :3].astype(np.uint16) * a + 127) // 255
    return out.astype(np.uint8)
