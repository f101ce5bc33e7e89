"""Opens the wizard over the real main window on Xvfb, walks it to the configuration step on the demo
dataset and checks the captured picture (written to the test's temp folder, never to docs/; see
``scripts/refresh_screenshots.py``). Skipped, with the reason, where Xvfb is not installed.
"""

from __future__ import annotations

import pytest

from screenshot_scenes import capture_wizard
from xvfb import XVFB_MISSING, load_screenshot, xvfb_available


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.skipif(not xvfb_available(), reason=XVFB_MISSING)
def test_wizard_screenshot_under_xvfb(tmp_path):
    out = tmp_path / "wizard.png"
    proc = capture_wizard(out, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "saved 1366 768 xcb" in proc.stdout
    load_screenshot(out, (768, 1366, 3))
