"""Icons and other files shipped in ``medseg_gui/resources`` (found beside the package, also when frozen)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resource_path(name: str) -> Path:
    return RESOURCES / name


def icon(name: str) -> QIcon:
    """An icon by file stem (``"page_hardware"``); SVG preferred, PNG fallback, empty icon if missing."""
    for suffix in (".svg", ".png"):
        path = RESOURCES / f"{name}{suffix}"
        if path.exists():
            return QIcon(str(path))
    return QIcon()


def app_icon() -> QIcon:
    """The app icon with a PNG fallback for platforms whose icon engines lack SVG."""
    result = QIcon(str(RESOURCES / "medseg.svg"))
    png = RESOURCES / "medseg.png"
    if png.exists():
        result.addFile(str(png))
    return result
