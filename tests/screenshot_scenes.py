"""The scenes of the documentation screenshots, captured from a real X server (Xvfb).

One capture code for two callers: the screenshot tests, which write into their temp folder and check
that a real window reached the screen, and ``scripts/refresh_screenshots.py``, which writes
docs/screenshots/ on purpose. Tests never write into the repository: running the suite must not
modify tracked files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from xvfb import run_capture

SCREEN = (1366, 768)  # a common laptop: the pictures show what its user sees

ROOT = Path(__file__).resolve().parents[1]

MAIN_WINDOW = r"""
import sys
from PySide6.QtCore import QTimer
from medseg_gui.gui.app import build_window

out, page = sys.argv[1], sys.argv[2]
app, window = build_window("demo", persist=False)
window.move(0, 0)
window.resize(1366, 768)
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

WIZARD = r"""
import sys, time
from PySide6.QtCore import QTimer
from medseg_gui.gui.app import build_window

out = sys.argv[1]
app, window = build_window("demo", persist=False)
window.move(0, 0)
window.resize(1366, 768)
window.show()
wizard = window.open_wizard()
wizard.move(0, 0)
wizard.resize(1366, 768)
started = time.monotonic()

def poll():
    page = wizard.currentPage()
    if wizard.currentId() == 0:
        wizard.next()
    elif wizard.currentId() == 1 and page.isComplete():
        wizard.next()
    elif wizard.currentId() == 2 and page.preflight_report is not None and page.preflight_current():
        QTimer.singleShot(500, grab)  # let the checklist paint
        return
    if time.monotonic() - started > 100:
        print("timed out on page", wizard.currentId(), flush=True)
        app.exit(4)
        return
    QTimer.singleShot(200, poll)

def grab():
    # From the X server, not a widget render: proves the wizard really reached the screen.
    pixmap = wizard.screen().grabWindow(wizard.winId())
    ok = pixmap.save(out, "PNG")
    print("saved" if ok else "save failed", pixmap.width(), pixmap.height(), app.platformName(), flush=True)
    wizard.reject()
    window.close()
    app.exit(0 if ok else 2)

QTimer.singleShot(500, poll)
QTimer.singleShot(150000, lambda: app.exit(3))
sys.exit(app.exec())
"""

VIEWER = r"""
import sys
from PySide6.QtCore import QEventLoop, QTimer
from medseg_gui.gui.app import build_window

out, images, masks, model = sys.argv[1:5]
app, window = build_window("demo", persist=False)
window.move(0, 0)
window.resize(1366, 768)
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


def capture_main_window(out: Path, work: Path) -> subprocess.CompletedProcess:
    """The main window on its Hardware page (1366 x 768) → ``out``; ``work`` is a scratch folder."""
    return run_capture(MAIN_WINDOW, [str(out), "Hardware"], ROOT, work, timeout_s=120, size=SCREEN)


def capture_wizard(out: Path, work: Path) -> subprocess.CompletedProcess:
    """The wizard walked to its configuration step on the demo (1366 x 768) → ``out``."""
    return run_capture(WIZARD, [str(out)], ROOT, work, timeout_s=180, size=SCREEN)


def capture_viewer(out: Path, work: Path, model: str | None = None) -> subprocess.CompletedProcess:
    """The Viewer with ``model``'s overlay on a held-out demo case (1366 x 768) → ``out``.

    Without ``model`` the tests' tiny random bundle is used; the committed picture used a SegFormer-b0
    trained on the demo with ``benchmarks/train_demo_model.py`` (256 px, 4000 steps on one H100;
    validation Dice 0.92 / 0.88 / 0.95).
    """
    if model is None:
        from viewer_helpers import tiny_bundle

        model = str(tiny_bundle(work, size=64))
    images, masks = demo_case(work)
    return run_capture(VIEWER, [str(out), str(images), str(masks), model], ROOT, work, timeout_s=240, size=SCREEN)


def demo_case(root: Path) -> tuple[Path, Path]:
    """One held-out case of the demo (the split the screenshot model never trained on)."""
    from medseg_gui.core.data.demo import generate_demo

    demo = generate_demo(root / "demo", n=240, size=256, seed=0)
    names = sorted(p.name for p in (demo / "valid" / "images").glob("*.png"))
    case = names[len(names) // 2].split("_slice")[0]
    images, masks = root / f"{case}_images", root / f"{case}_masks"
    for sub, dst in (("images", images), ("masks", masks)):
        dst.mkdir(exist_ok=True)
        for name in names:
            if name.startswith(case + "_"):
                shutil.copy(demo / "valid" / sub / name, dst / name)
    return images, masks
