"""The image canvas: pyqtgraph views with the scan and an RGBA overlay, pan/zoom, right-drag window/level.

Only shows arrays it is given and reports the mouse in image pixels; the window maths and the overlay
colours are computed in ``core.viewer_doc``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QVBoxLayout, QWidget

from medseg_gui.gui.plots import release_label_width

BACKGROUND = "#101318"


class WindowLevelViewBox(pg.ViewBox):
    """A ViewBox where the left button pans, the wheel zooms and the right button drags window/level
    (as in radiology workstations) instead of pyqtgraph's right-drag zoom and context menu."""

    def __init__(self, on_window_drag, **kwargs):
        super().__init__(**kwargs)
        self._on_window_drag = on_window_drag
        self.setMenuEnabled(False)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (Qt naming)
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.pos() - ev.lastPos()
            self._on_window_drag(float(delta.x()), float(delta.y()))
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu
            return
        super().mouseClickEvent(ev)


class _ImagePane:
    """One view box with an image item, an overlay item and a caption."""

    def __init__(self, layout: pg.GraphicsLayout, column: int, on_window_drag):
        self.view = WindowLevelViewBox(on_window_drag, lockAspect=True, invertY=True, enableMenu=False)
        self.view.setBackgroundColor(BACKGROUND)
        # A caption never sizes its column: pyqtgraph's LabelItem asks for its text's width, so a long
        # caption over one pane took width from the other and side-by-side panes were unequal.
        self.caption = release_label_width(pg.LabelItem("", color="#c9d1dc", size="9pt"))
        layout.addItem(self.caption, row=0, col=column)
        layout.addItem(self.view, row=1, col=column)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self.shape: tuple[int, int] | None = None

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)

    def set_image(self, image_u8: np.ndarray, y_scale: float) -> bool:
        """Returns True when the shape changed (the caller then resets the zoom)."""
        self.image.setImage(image_u8, autoLevels=False, levels=(0, 255))
        transform = QTransform.fromScale(1.0, y_scale)
        self.image.setTransform(transform)
        self.overlay.setTransform(transform)
        changed = self.shape != image_u8.shape[:2]
        self.shape = image_u8.shape[:2]
        return changed

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        if rgba is None:
            self.overlay.clear()
            self.overlay.setVisible(False)
        else:
            self.overlay.setImage(rgba, autoLevels=False, levels=(0, 255))
            self.overlay.setVisible(True)


class SliceCanvas(QWidget):
    """The main pane plus an optional second pane (side-by-side truth), with linked pan/zoom."""

    hovered = Signal(int, int)        # image pixel (x, y)
    left = Signal()                   # the mouse left the image
    window_dragged = Signal(float, float)
    step_requested = Signal(int)      # slice step from the keyboard or the wheel with Ctrl
    jump_requested = Signal(int)      # -1 first, +1 last

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.ci.setContentsMargins(4, 4, 4, 4)
        self.graphics.ci.setSpacing(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.main = _ImagePane(self.graphics.ci, 0, self.window_dragged.emit)
        self.second: _ImagePane | None = None
        self._y_scale = 1.0
        self.main.image.hoverEvent = self._hover_event  # type: ignore[method-assign]
        self.graphics.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.graphics.installEventFilter(self)
        self.graphics.viewport().installEventFilter(self)

    # ----- content ------------------------------------------------------------------------------
    def show_slice(self, image_u8: np.ndarray, overlay: np.ndarray | None, *, y_scale: float = 1.0,
                   second: tuple[np.ndarray, np.ndarray | None] | None = None,
                   captions: tuple[str, str] = ("", "")) -> None:
        self._y_scale = y_scale
        changed = self.main.set_image(image_u8, y_scale)
        self.main.set_overlay(overlay)
        self.main.set_caption(captions[0])
        self._set_second(second is not None)
        if second is not None and self.second is not None:
            changed |= self.second.set_image(second[0], y_scale)
            self.second.set_overlay(second[1])
            self.second.set_caption(captions[1])
        if changed:
            self.reset_zoom()

    def clear(self) -> None:
        self.main.image.clear()
        self.main.set_overlay(None)
        self.main.shape = None
        self.main.set_caption("")
        self._set_second(False)

    def _set_second(self, on: bool) -> None:
        if on and self.second is None:
            self.second = _ImagePane(self.graphics.ci, 1, self.window_dragged.emit)
            self.second.view.setXLink(self.main.view)
            self.second.view.setYLink(self.main.view)
            self.second.image.hoverEvent = self._hover_event  # type: ignore[method-assign]
            grid = self.graphics.ci.layout
            grid.setColumnStretchFactor(0, 1)
            grid.setColumnStretchFactor(1, 1)
        elif not on and self.second is not None:
            self.graphics.ci.removeItem(self.second.view)
            self.graphics.ci.removeItem(self.second.caption)
            self.second = None
            self.reset_zoom()

    def reset_zoom(self) -> None:
        if self.main.shape is not None:
            h, w = self.main.shape
            self.main.view.setRange(xRange=(0, w), yRange=(0, h * self._y_scale), padding=0.02)

    # ----- mouse and keys -----------------------------------------------------------------------
    def _hover_event(self, ev) -> None:
        if ev.isExit():
            self.left.emit()
            return
        pos: QPointF = ev.pos()  # in the image item's own (pixel) coordinates
        x, y = int(np.floor(pos.x())), int(np.floor(pos.y()))
        self.hovered.emit(x, y)

    def image_pixel_at(self, scene_pos: QPointF) -> tuple[int, int]:
        p = self.main.image.mapFromScene(scene_pos)
        return int(np.floor(p.x())), int(np.floor(p.y()))

    KEY_STEPS = {Qt.Key.Key_Up: -1, Qt.Key.Key_Left: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Right: 1}

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.KeyPress and self.handle_key(event.key()):
            return True
        return super().eventFilter(obj, event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if not self.handle_key(event.key()):
            super().keyPressEvent(event)

    def handle_key(self, key: int) -> bool:
        if key in self.KEY_STEPS:
            self.step_requested.emit(self.KEY_STEPS[key])
        elif key == Qt.Key.Key_PageUp:
            self.step_requested.emit(-10)
        elif key == Qt.Key.Key_PageDown:
            self.step_requested.emit(10)
        elif key == Qt.Key.Key_Home:
            self.jump_requested.emit(-1)
        elif key == Qt.Key.Key_End:
            self.jump_requested.emit(1)
        else:
            return False
        return True
