"""Where the app keeps its own files (demo dataset, compile cache, fit-probe cache, settings).

Overridable with ``MEDSEG_HOME`` so tests and CI never touch the user's home.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def app_home() -> Path:
    env = os.environ.get("MEDSEG_HOME")
    if env:
        base = Path(env)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "medseg-gui"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "medseg-gui"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "medseg-gui"
    base.mkdir(parents=True, exist_ok=True)
    return base


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
