"""Opens the real main window on a real X server (Xvfb) and saves docs/screenshots/main_window.png.

Skipped, with the reason, where Xvfb is not installed (Debian: xvfb xauth and the xcb libraries; see
.ci/run). Set MEDSEG_SCREENSHOT_DIR to write somewhere else than docs/screenshots.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xvfb import xvfb_available, xvfb_display

ROOT = Path(__file__).resolve().parents[1]

CAPTURE = r"""
import sys
from PySide6.QtCore import QTimer
from medseg_gui.gui.app import build_window

out, page = sys.argv[1], sys.argv[2]
app, window = build_window("demo", persist=False)
window.move(0, 0)
window.resize(1400, 900)
window.show()
window.show_page(page)

def grab():
    # From the X server, not a widget render: proves the window really reached the screen.
    pixmap = window.screen().grabWindow(window.winId())
    ok = pixmap.save(out, "PNG")
    print("saved" if ok else "save failed", pixmap.width(), pixmap.height(), app.platformName(), flush=True)
    window.close()
    app.exit(0 if ok else 2)

QTimer.singleShot(2500, grab)  # a few hardware polls, so the cards show live readings
QTimer.singleShot(60000, lambda: app.exit(3))
sys.exit(app.exec())
"""


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.skipif(not xvfb_available(), reason="Xvfb is not installed (apt-get install xvfb xauth "
                    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
                    "libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0)")
def test_main_window_screenshot_under_xvfb(tmp_path):
    out_dir = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", ROOT / "docs" / "screenshots"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "main_window.png"
    with xvfb_display(1400, 900) as display:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(ROOT),
                   XDG_RUNTIME_DIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-c", CAPTURE, str(out), "Hardware"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "saved 1400 900 xcb" in proc.stdout
    from PIL import Image

    with Image.open(out) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert pixels.shape == (900, 1400, 3)
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "too few colours for a rendered window"
