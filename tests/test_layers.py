"""The layer rule: ``medseg_gui.core`` and every submodule import no Qt, no pyqtgraph, no GUI code.

Runs in a fresh interpreter (other tests load Qt into this one) and walks the package, so a new core
module is covered without editing this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WALK = r"""
import importlib, json, pkgutil, sys
import medseg_gui.core as core
imported, skipped, broken = [], {}, {}
for info in pkgutil.walk_packages(core.__path__, "medseg_gui.core."):
    try:
        importlib.import_module(info.name)
        imported.append(info.name)
    except ModuleNotFoundError as exc:
        # an optional third-party dependency that is not installed; our own modules must import
        if exc.name and not exc.name.startswith("medseg_gui"):
            skipped[info.name] = exc.name
        else:
            broken[info.name] = repr(exc)
    except Exception as exc:
        broken[info.name] = repr(exc)
forbidden = sorted(m for m in sys.modules
                   if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")
                   or m == "medseg_gui.gui" or m.startswith("medseg_gui.gui."))
print(json.dumps({"imported": imported, "skipped": skipped, "broken": broken, "forbidden": forbidden}))
"""


def test_core_imports_no_qt_and_no_gui():
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_ALBUMENTATIONS_UPDATE="1")
    proc = subprocess.run([sys.executable, "-c", WALK], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["broken"] == {}, f"core modules that fail to import: {result['broken']}"
    assert "medseg_gui.core.config" in result["imported"] and "medseg_gui.core.hardware" in result["imported"]
    assert result["forbidden"] == [], (
        f"core pulled in {result['forbidden']}; core must stay importable without Qt (see ARCHITECTURE.md)")
