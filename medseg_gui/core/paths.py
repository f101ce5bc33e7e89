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
