"""The app's remembered preferences (window geometry, last page, the wizard's first-run flag).

An INI file in the app's home, so ``MEDSEG_HOME`` isolates tests and portable installs. Its own
module so the main window and the wizard both read it without importing each other.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from medseg_gui.core.paths import app_home


def settings() -> QSettings:
    return QSettings(str(app_home() / "settings.ini"), QSettings.Format.IniFormat)
