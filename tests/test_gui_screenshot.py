"""Opens the real main window on a real X server (Xvfb) and checks the captured picture.

The picture goes to the test's temp folder: running the tests never rewrites docs/screenshots/
(``scripts/refresh_screenshots.py`` does that, with this same capture code). Skipped, with the
reason, where Xvfb is not installed (Debian: xvfb xauth and the xcb libraries; see .ci/run).
"""

from __future__ import annotations

import pytest

from screenshot_scenes import capture_main_window
from xvfb import XVFB_MISSING, load_screenshot, xvfb_available


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.skipif(not xvfb_available(), reason=XVFB_MISSING)
def test_main_window_screenshot_under_xvfb(tmp_path):
    out = tmp_path / "main_window.png"
    proc = capture_main_window(out, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "saved 1366 768 xcb" in proc.stdout
    load_screenshot(out, (768, 1366, 3))
