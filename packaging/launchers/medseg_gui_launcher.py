"""Frozen entry point of the desktop app: ``medseg_gui.gui.app.main`` with what a bundle needs first.

Why a launcher instead of freezing ``app.py`` itself: run as a script, ``app.py`` would become
``__main__`` and a later ``import medseg_gui.gui.app`` would load it a second time.
``multiprocessing.freeze_support()`` lets DataLoader worker processes start from the frozen binary
(the DataLoader spawns its workers on every platform: core/data/datamodule.py), and a windowed Windows build has no ``sys.stdout``, so output (the
``--self-test`` JSON line, tracebacks) goes to a log file in the app's home instead of vanishing.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _ensure_streams() -> None:
    if sys.stdout is not None and sys.stderr is not None:
        return
    from medseg_gui.core.paths import app_home

    log_dir = app_home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "medseg-gui.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the process
    if sys.stdout is None:
        sys.stdout = log
    if sys.stderr is None:
        sys.stderr = log


if __name__ == "__main__":
    multiprocessing.freeze_support()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    _ensure_streams()
    from medseg_gui.gui.app import main

    raise SystemExit(main())
