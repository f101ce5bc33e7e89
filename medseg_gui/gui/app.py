"""Entry point of the desktop app (``medseg-gui [DATASET]``, ``python -m medseg_gui``).

Start-up is budgeted: the window must paint within 1.5 s on a 2-core machine, so nothing here or in
the pages imports torch, lightning, transformers or albumentations. They are imported in a
background thread *after* the first paint, so that Start training is quick later on.
``--self-test`` opens the window offscreen, waits for the real first paint and prints one JSON line
(time to paint, which heavy modules were loaded by then, versions), which CI and the packaged app use.
"""

from __future__ import annotations

import time

T_IMPORT = time.perf_counter()  # as early as this module allows; the process age is measured too

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

HEAVY_MODULES = ("torch", "lightning", "transformers", "albumentations")
# What the background preload imports (transformers itself is lazy; the SegFormer module is the cost).
PRELOAD_MODULES = ("torch", "lightning", "transformers.models.segformer.modeling_segformer")


def process_age_s() -> float | None:
    """Seconds since this process was created (launch), to 10 ms, or None if the OS will not say.

    On Linux from /proc (tick-accurate); psutil's create_time there adds the boot time rounded to a
    whole second, which would make a 1 s budget unmeasurable.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat; 20 after dropping pid and comm
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="medseg-gui", description="medseg-gui desktop app")
    parser.add_argument("dataset", nargs="?", default=None,
                        help="dataset folder to open (default: the last session's, else the built-in demo)")
    parser.add_argument("--self-test", action="store_true",
                        help="open the window offscreen, print start-up timings as JSON and exit")
    parser.add_argument("--no-preload", action="store_true",
                        help="do not import the training libraries in the background after start-up")
    parser.add_argument("--no-wizard", action="store_true",
                        help="do not open the recommend-and-train wizard at start-up (first launch)")
    return parser.parse_args(argv)


def preload_in_background(modules: tuple[str, ...] = PRELOAD_MODULES) -> threading.Thread:
    """Import the training stack in a daemon thread; failures are ignored (the real use reports them)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

    def run() -> None:
        import importlib

        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:
                pass

    thread = threading.Thread(target=run, name="preload-training-libraries", daemon=True)
    thread.start()
    return thread


class FirstPaintWatcher:
    """Records when the window has been painted for the first time.

    The Paint event reaches the top-level window before its children paint, so the time is taken
    in a zero-delay timer queued from that event, i.e. after the whole paint pass has finished.
    """

    def __init__(self, window, on_painted):
        from PySide6.QtCore import QEvent, QObject, QTimer

        watcher = self

        class _Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 (Qt naming)
                if event.type() == QEvent.Type.Paint and not watcher.seen:
                    watcher.seen = True
                    QTimer.singleShot(0, watcher._done)
                return False

        self.seen = False
        self.painted_at: float | None = None
        self._on_painted = on_painted
        self._window = window
        self._filter = _Filter()
        window.installEventFilter(self._filter)

    def _done(self) -> None:
        self.painted_at = time.perf_counter()
        self._window.removeEventFilter(self._filter)
        self._on_painted(self)


def build_window(dataset: str | None = "demo", *, persist: bool = True):
    """The styled QApplication and the main window on ``dataset`` (shared by ``main`` and screenshot tools)."""
    from PySide6.QtWidgets import QApplication

    from medseg_gui.gui.main_window import MainWindow
    from medseg_gui.gui.resources import app_icon
    from medseg_gui.gui.state import AppState
    from medseg_gui.gui.style import apply_style

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("medseg-gui")
    app.setOrganizationName("medseg-gui")
    app.setApplicationDisplayName("medseg-gui")
    app.setWindowIcon(app_icon())
    apply_style(app)
    state = AppState()
    window = MainWindow(state, persist=persist)  # restores the last session's configuration when persist
    if dataset is not None:  # a folder named on the command line wins over the restored one
        state.set_dataset(dataset)
    return app, window


def display_problem(environ: dict[str, str] | os._Environ = os.environ, system: str = sys.platform) -> str:
    """Why no window can open here ('' when one can), said before Qt is asked.

    On Linux without DISPLAY or WAYLAND_DISPLAY Qt's xcb plugin aborts the process (SIGABRT) with a
    message about missing plugins that points at the wrong cause; QT_QPA_PLATFORM names an explicit
    platform (offscreen, vnc, eglfs), so it is left to Qt. Windows and macOS always have a display.
    """
    if not system.startswith("linux") or environ.get("QT_QPA_PLATFORM"):
        return ""
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return ""
    return ("medseg-gui needs a display, and none is set (DISPLAY and WAYLAND_DISPLAY are empty): run it "
            "in a desktop session or with ssh -X, set QT_QPA_PLATFORM=offscreen to run it without a "
            "screen, or use the command line instead (medseg --help)")


def dataset_problem(dataset: str | None) -> str:
    """Why the dataset named on the command line cannot be opened ('' when it can)."""
    if dataset is None or dataset == "demo":
        return ""
    path = Path(dataset).expanduser()
    if not path.exists():
        return (f"dataset folder {path} does not exist — check the path, or start medseg-gui without it "
                "and choose the dataset in the app")
    if not path.is_dir():
        return f"{path} is not a folder — give the dataset folder (with images/ and masks/ inside)"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    problem = display_problem() or dataset_problem(args.dataset)
    if problem:  # before QApplication exists: Qt would abort, or open on a folder it cannot train on
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer, qVersion
    from PySide6.QtWidgets import QApplication

    app, window = build_window(args.dataset, persist=not args.self_test)
    state = window.state
    result: dict = {}

    def painted(watcher: FirstPaintWatcher) -> None:
        age = process_age_s()
        in_process_ms = (watcher.painted_at - T_IMPORT) * 1000
        result.update({
            "first_paint_ms": round(age * 1000, 1) if age is not None else round(in_process_ms, 1),
            "first_paint_ms_since_app_import": round(in_process_ms, 1),
            "paint_epoch": time.time(),
            "heavy_modules_loaded": {name: name in sys.modules for name in HEAVY_MODULES},
            "python": platform.python_version(),
            "qt": qVersion(),
            "platform": QApplication.platformName(),
            "dataset": state.dataset_path,
        })
        if args.self_test:
            window.close()
            app.quit()
        elif not args.no_preload:
            QTimer.singleShot(300, preload_in_background)
        if not args.self_test and not args.no_wizard:  # the first-run wizard, after the first paint
            from medseg_gui.gui.wizard import maybe_open_on_first_launch

            QTimer.singleShot(0, lambda: maybe_open_on_first_launch(window))

    window._first_paint_watcher = FirstPaintWatcher(window, painted)  # kept alive until painted
    window.show()
    if args.self_test:
        QTimer.singleShot(30_000, lambda: app.exit(3))  # never hang CI if no paint ever comes
    code = app.exec()
    window.stop_workers()
    if args.self_test:
        if not result:
            print(json.dumps({"error": "the window was never painted"}), flush=True)
            return 3
        print(json.dumps(result), flush=True)
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
