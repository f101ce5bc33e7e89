"""Icons the window shows, found wherever the app runs from.

The icons live in the repository's top-level ``resources/icons`` (beside ``medseg_gui/``, with the
desktop entry), so they are kept in one place however the app is installed. Where they are at run time:

* a wheel (``pip install .``) and the frozen bundle ship them inside the package as
  ``medseg_gui/_resources`` (``setup.py`` maps the folder there; the PyInstaller spec copies it there);
* a source checkout or an editable install (``pip install -e .``) reads the repository's folder itself.

The first of these that holds the app icon wins; a missing icon gives an empty ``QIcon``, never an error.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

PACKAGE = Path(__file__).resolve().parent.parent
#: Where to look, in order: inside the installed package or bundle, then the repository.
CANDIDATES = (PACKAGE / "_resources", PACKAGE.parent / "resources" / "icons")
APP_ICON = "medseg.svg"


def find_icons(candidates: tuple[Path, ...] = CANDIDATES) -> Path:
    """The first candidate folder that holds the app icon (the first candidate when none does, so a
    missing icon shows up as an empty icon, not a crash)."""
    for folder in candidates:
        if (folder / APP_ICON).is_file():
            return folder
    return candidates[0]


RESOURCES = find_icons()


def icon(name: str) -> QIcon:
    """An icon by file stem (``"page_hardware"``); SVG preferred, PNG fallback, empty icon if missing."""
    for suffix in (".svg", ".png"):
        path = RESOURCES / f"{name}{suffix}"
        if path.exists():
            return QIcon(str(path))
    return QIcon()


def app_icon() -> QIcon:
    """The app icon with a PNG fallback for platforms whose icon engines lack SVG."""
    result = QIcon(str(RESOURCES / APP_ICON))
    png = RESOURCES / "medseg.png"
    if png.exists():
        result.addFile(str(png))
    return result
