"""Where the app keeps its own files (demo dataset, compile cache, fit-probe cache, settings, runs).

The folder is the platform's per-user data folder as ``platformdirs`` names it: ``~/.local/share/medseg-gui``
(or ``$XDG_DATA_HOME/medseg-gui``) on Linux, ``~/Library/Application Support/medseg-gui`` on macOS,
``%LOCALAPPDATA%\\medseg-gui`` on Windows — the places earlier versions used, so existing runs and settings
are found. ``MEDSEG_HOME`` overrides it, so tests and CI never touch the user's home.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "medseg-gui"


def app_home() -> Path:
    env = os.environ.get("MEDSEG_HOME")
    base = Path(env) if env else choose_home(platform_home(), earlier_home())
    base.mkdir(parents=True, exist_ok=True)
    return base


def platform_home() -> Path:
    """The per-user data folder of this platform (not roaming on Windows: runs and caches are large)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False, roaming=False))


def earlier_home() -> Path | None:
    """Where versions before platformdirs put the folder, where that can differ from ``platform_home``:
    on macOS they ignored ``$XDG_DATA_HOME`` (platformdirs honours it), on Windows they read
    ``%LOCALAPPDATA%`` rather than asking the system. None on Linux, where the two rules agree."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / APP_NAME
    return None


def choose_home(current: Path, earlier: Path | None) -> Path:
    """``current``, unless only the ``earlier`` folder exists: then that one, so a user's runs and settings
    are never left behind by a change of rule."""
    if earlier is not None and earlier != current and earlier.is_dir() and not current.exists():
        return earlier
    return current


def cache_dir(name: str) -> Path:
    """A named cache sub-folder (e.g. 'demo', 'compile', 'fit-probe'), created on demand."""
    path = app_home() / "cache" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def last_config_file() -> Path:
    """The configuration the app had when it last closed (restored at the next start)."""
    return app_home() / "last_config.toml"


def default_output_dir() -> Path:
    """Where the app's runs go unless the user chooses a folder: not the launch directory, which for a
    desktop app is wherever the launcher happened to start it."""
    return app_home() / "runs"


def absolute_output_dir(value: str) -> str:
    """``training.output_dir`` as an absolute path: a relative one is taken inside the app's data folder."""
    path = Path(value.strip() or "runs").expanduser()
    return str(path if path.is_absolute() else app_home() / path)


def docs_location() -> Path | None:
    """The local documentation (docs/ beside the package in a source install, else the README), or None."""
    root = Path(__file__).resolve().parents[2]
    for candidate in (root / "README.md", root / "docs"):
        if candidate.exists():
            return candidate
    return None
