"""Small pyqtgraph helpers shared by the training plots, the LR finder and the viewer's captions.

Why they exist: pyqtgraph's defaults read badly for our numbers. A flat learning rate of 3e-4 is drawn
on a "±400 (×0.001)" axis; step and epoch axes show 2.5; an empty log axis labels its minor ticks
"2 3 … 9"; and a ``LabelItem`` (plot titles, pane captions) asks for its text's full width, so a long
title made a plot wider than its cell and the view clipped the title and the end of the curve.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt


def release_label_width(label: pg.LabelItem) -> pg.LabelItem:
    """Let ``label`` shrink with its cell instead of pinning the layout to its text's width."""

    def update_min(self: pg.LabelItem) -> None:
        height = self.itemRect().height()
        self.setMinimumWidth(0)
        self.setMinimumHeight(height)
        self._sizeHint = {Qt.SizeHint.MinimumSize: (0, height), Qt.SizeHint.PreferredSize: (0, height),
                          Qt.SizeHint.MaximumSize: (-1, -1), Qt.SizeHint.MinimumDescent: (0, 0)}
        self.updateGeometry()

    label.updateMin = types.MethodType(update_min, label)  # type: ignore[method-assign]
    label.updateMin()
    return label


def sci(value: float) -> str:
    """``3e-4``, ``1e-3``, ``2.5e-5`` (and ``1``, ``2.5``): how learning rates are written in configs."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10 ** exponent, 1)
    if abs(mantissa) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    text = f"{mantissa:.1f}".rstrip("0").rstrip(".")
    return text if exponent == 0 else f"{text}e{exponent}"


class IntegerAxis(pg.AxisItem):
    """Ticks only at whole numbers (steps, epochs): no "2.5 epochs"."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph naming)
        levels = [(spacing, values) for spacing, values in super().tickValues(minVal, maxVal, size)
                  if spacing >= 1]
        if not levels:
            lo, hi = math.ceil(minVal), math.floor(maxVal)
            levels = [(1.0, [float(v) for v in range(lo, hi + 1)])] if hi >= lo and hi - lo < 50 else []
        return [(s, [v for v in vals if float(v).is_integer()]) for s, vals in levels]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph naming)
        return [str(int(round(v * scale))) for v in values]


class SciLogAxis(pg.AxisItem):
    """A log axis labelled like ``1e-4 3e-4 1e-3``, for learning rates.

    Ticks: every decade, plus 2 and 5 (or 3) within a decade when the range is short; never the bare
    "2 3 … 9" minor labels of pyqtgraph's log axis. Values are log10 positions (pyqtgraph log mode).
    """

    def __init__(self, orientation: str = "left", **kwargs):
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal, maxVal, size):  # noqa: N802, N803
        if not (math.isfinite(minVal) and math.isfinite(maxVal)) or maxVal <= minVal:
            return []
        span = maxVal - minVal
        steps = [1.0] if span > 4 else [1.0, 2.0, 5.0] if span > 1.2 else [1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
        values = []
        for decade in range(int(math.floor(minVal)) - 1, int(math.ceil(maxVal)) + 1):
            for m in steps:
                v = decade + math.log10(m)
                if minVal <= v <= maxVal:
                    values.append(v)
        if span > 8:  # many decades: every other one
            values = [v for v in values if round(v) % 2 == 0]
        return [(1.0, values)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        return [sci(10 ** v) for v in values]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802
        return self.tickStrings(values, scale, spacing)


def tight_log_range(values: np.ndarray) -> tuple[float, float] | None:
    """A log10 range that shows ``values`` with room: a flat line sits in the middle of a range of
    about half a decade each way (so 3e-4 reads as 3e-4, not as a wiggle around "0")."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return None
    lo, hi = math.log10(float(v.min())), math.log10(float(v.max()))
    pad = max(0.15, 0.08 * (hi - lo))
    if hi - lo < 0.6:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.4, mid + 0.4
    return lo - pad, hi + pad
