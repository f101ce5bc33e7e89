"""Keep top-level windows inside the screen's available area (a 1366 x 768 laptop, a taskbar)."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

TITLE_BAR_PX = 32  # room left for the window manager's title bar before the window has a frame


def fit_to_screen(widget: QWidget) -> None:
    """Shrink ``widget`` so its frame fits the available area of its screen, and move it inside it."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return
    area = screen.availableGeometry()
    frame = widget.frameGeometry()
    extra_w, extra_h = frame.width() - widget.width(), frame.height() - widget.height()
    if not widget.isVisible():  # no frame yet
        extra_w, extra_h = max(extra_w, 0), max(extra_h, TITLE_BAR_PX)
    width = min(widget.width(), area.width() - extra_w)
    height = min(widget.height(), area.height() - extra_h)
    if (width, height) != (widget.width(), widget.height()):
        widget.resize(width, height)
    frame = widget.frameGeometry()
    x = min(max(frame.x(), area.x()), area.right() - frame.width() + 1)
    y = min(max(frame.y(), area.y()), area.bottom() - frame.height() + 1)
    if (x, y) != (frame.x(), frame.y()):
        widget.move(x, y)
