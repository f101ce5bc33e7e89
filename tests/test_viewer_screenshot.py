"""The Viewer page with a model's overlay on a real X server (Xvfb), checked from the captured picture.

The scene: a held-out case of the built-in demo dataset opened as a slice folder, its masks loaded as
ground truth (so the Dice/IoU table is filled), the model (the tests' tiny random bundle) run on the
whole volume. The picture goes to the test's temp folder; ``scripts/refresh_screenshots.py`` writes
docs/screenshots/viewer.png with a trained model. Skipped, with the reason, without Xvfb.
"""

from __future__ import annotations

import numpy as np
import pytest

from screenshot_scenes import capture_viewer
from xvfb import XVFB_MISSING, load_screenshot, xvfb_available


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.skipif(not xvfb_available(), reason=XVFB_MISSING)
def test_viewer_screenshot_under_xvfb(tmp_path):
    out = tmp_path / "viewer.png"
    proc = capture_viewer(out, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "saved 1366 768 xcb" in proc.stdout
    pixels = load_screenshot(out, (768, 1366, 3))
    # the class colours of the overlay are on screen (blended with the scan, so look for strong hues)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((r - np.maximum(g, b)) > 60).sum() > 200 or ((b - np.maximum(r, g)) > 60).sum() > 200
