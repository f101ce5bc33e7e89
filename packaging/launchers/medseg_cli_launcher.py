"""Frozen entry point of the ``medseg`` command line, shipped beside the desktop app in one folder.

The frozen ``medseg-gui`` cannot run ``python -m medseg_gui.cli``, so the headless twin (and the
multi-GPU training child the GUI starts) needs an executable of its own in the same bundle.
"""

from __future__ import annotations

import multiprocessing
import os

if __name__ == "__main__":
    multiprocessing.freeze_support()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from medseg_gui.cli import main

    raise SystemExit(main())
