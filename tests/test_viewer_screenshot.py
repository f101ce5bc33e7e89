"""The Viewer page with a model's overlay on a real X server (Xvfb) → docs/screenshots/viewer.png.

The scene: a held-out case of the built-in demo dataset opened as a slice folder, its masks loaded as
ground truth (so the Dice/IoU table is filled), the model run on the whole volume. The model is the
tiny random bundle of the tests unless ``MEDSEG_SCREENSHOT_MODEL`` names a trained bundle; the
committed picture used a SegFormer-b0 trained on the demo with ``benchmarks/train_demo_model.py``
(256 px, 4000 steps on one H100; validation Dice 0.92 / 0.88 / 0.95). Skipped, with the reason,
without Xvfb.

Where it writes: with ``MEDSEG_SCREENSHOT_MODEL`` set, docs/screenshots/viewer.png; without it, a
temp folder (a random model's speckle must not replace the committed picture on every test run).
``MEDSEG_SCREENSHOT_DIR`` overrides both.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from viewer_helpers import tiny_bundle
from xvfb import XVFB_MISSING, load_screenshot, run_capture, xvfb_available

ROOT = Path(__file__).resolve().parents[1]

CAPTURE = r"""
import sys
from PySide6.QtCore import QEventLoop, QTimer
from medseg_gui.gui.app import build_window

out, images, masks, model = sys.argv[1:5]
app, window = build_window("demo", persist=False)
window.move(0, 0)
window.resize(1400, 900)
window.show()
window.show_page("Viewer")
viewer = window.viewer

def wait(signal, ms=120000):
    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(ms, loop.quit)
    loop.exec()

assert viewer.open_path(images), viewer.last_error
wait(viewer.model_loaded) if viewer.load_model(model) is None else None
assert viewer.predictor is not None, viewer.last_error
viewer.set_slice(4)
viewer.run_volume()
wait(viewer.prediction_finished)
assert viewer.load_truth(masks), viewer.last_error
viewer.set_compare("prediction")
viewer.controls.opacity_slider.setValue(45)
# hover readout over a labelled pixel, as when the mouse rests on an organ
labels = viewer.doc.labels[viewer.doc.slice_index]
ys, xs = (labels == 1).nonzero() if (labels == 1).any() else labels.nonzero()
if len(xs):
    viewer.canvas.hovered.emit(int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))

def grab():
    pixmap = window.screen().grabWindow(window.winId())
    ok = pixmap.save(out, "PNG")
    print("saved" if ok else "save failed", pixmap.width(), pixmap.height(), app.platformName(), flush=True)
    window.close()
    app.exit(0 if ok else 2)

QTimer.singleShot(800, grab)
QTimer.singleShot(60000, lambda: app.exit(3))
sys.exit(app.exec())
"""


def _demo_case(root: Path) -> tuple[Path, Path]:
    """One held-out case of the demo (the split the screenshot model never trained on)."""
    from medseg_gui.core.data.demo import generate_demo

    demo = generate_demo(root / "demo", n=240, size=256, seed=0)
    names = sorted(p.name for p in (demo / "valid" / "images").glob("*.png"))
    case = names[len(names) // 2].split("_slice")[0]
    images, masks = root / f"{case}_images", root / f"{case}_masks"
    for sub, dst in (("images", images), ("masks", masks)):
        dst.mkdir()
        for name in names:
            if name.startswith(case + "_"):
                shutil.copy(demo / "valid" / sub / name, dst / name)
    return images, masks


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.skipif(not xvfb_available(), reason=XVFB_MISSING)
def test_viewer_screenshot_under_xvfb(tmp_path):
    trained = os.environ.get("MEDSEG_SCREENSHOT_MODEL")
    default_dir = ROOT / "docs" / "screenshots" if trained else tmp_path / "screenshots"
    out_dir = Path(os.environ.get("MEDSEG_SCREENSHOT_DIR", default_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "viewer.png"
    model = trained or str(tiny_bundle(tmp_path, size=64))
    images, masks = _demo_case(tmp_path)
    proc = run_capture(CAPTURE, [str(out), str(images), str(masks), model], ROOT, tmp_path, timeout_s=240)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "saved 1400 900 xcb" in proc.stdout
    pixels = load_screenshot(out, (900, 1400, 3))
    # the class colours of the overlay are on screen (blended with the scan, so look for strong hues)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((r - np.maximum(g, b)) > 60).sum() > 200 or ((b - np.maximum(r, g)) > 60).sum() > 200
