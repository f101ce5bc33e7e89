"""The main window: a sidebar of pages, menus, shortcuts, status bar and remembered geometry.

The window builds every page and the pieces that join them (the speed card under the
recommendation, the checklist before Start, the run's status-bar item, the close guard, the wizard's
menu entry) itself, in ``__init__``: nothing attaches to it from outside, so this file says what the
window holds.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, __version__ as pyside_version, qVersion
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QMessageBox, QStackedWidget, QVBoxLayout, QWidget)

from medseg_gui import __version__
from medseg_gui.core.hardware import HardwareSnapshot
from medseg_gui.core.last_config import load_last, save_last
from medseg_gui.core.paths import absolute_output_dir, docs_location
from medseg_gui.gui import style
from medseg_gui.gui.config_editor import ConfigEditor
from medseg_gui.gui.hardware_panel import HardwarePanel
from medseg_gui.gui.resources import app_icon, icon
from medseg_gui.gui.screen_fit import fit_to_screen
from medseg_gui.gui.settings import settings
from medseg_gui.gui.state import AppState
from medseg_gui.gui.tools import PreflightChecklist, SpeedCard, ToolsPage, install_start_gate
from medseg_gui.gui.training import CloseGuard, TrainingTab, run_status_item
from medseg_gui.gui.viewer import ViewerWidget
from medseg_gui.gui.wizard import open_wizard
from medseg_gui.gui.workers import ProbeFn, Task, cancel_all, hardware_poller

HEAVY_MODULES = ("torch", "lightning", "transformers", "albumentations")
DEFAULT_SIZE = QSize(1360, 860)  # shrunk to the screen's available area (a 1366 x 768 laptop, say)


def library_versions() -> dict[str, str]:
    """Versions for the About box; heavy libraries are reported only if something already loaded them."""
    import numpy

    versions = {"medseg-gui": __version__, "Python": platform.python_version(), "Qt": qVersion(),
                "PySide6": pyside_version, "NumPy": numpy.__version__}
    try:
        import pyqtgraph

        versions["pyqtgraph"] = pyqtgraph.__version__
    except ImportError:  # pragma: no cover - a dependency
        versions["pyqtgraph"] = "missing"
    for name in HEAVY_MODULES:
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", "loaded") if module is not None else "not loaded yet"
    return versions


def about_text() -> str:
    rows = "".join(f"<tr><td style='padding-right:14px'>{k}</td><td>{v}</td></tr>"
                   for k, v in library_versions().items())
    return ("<h3>medseg-gui</h3><p>Train SegFormer segmentation models that fit your GPU, watch them "
            f"learn, and view their masks.</p><table>{rows}</table>")


class MainWindow(QMainWindow):
    PAGE_SHORTCUTS = 9

    def __init__(self, state: AppState | None = None, *, probe_fn: ProbeFn | None = None,
                 poll_hardware: bool = True, poll_interval_ms: int = 1000, persist: bool = True):
        super().__init__()
        self.state = state or AppState(parent=self)
        self._persist = persist
        self._pages: dict[str, int] = {}
        self._page_actions: list[QAction] = []
        self.wizard = None  # the wizard this window opened (open_wizard)
        self.setWindowTitle("medseg-gui")
        self.setWindowIcon(app_icon())
        self.restored_message = ""
        if persist:  # before the pages exist, so they all start from the user's last configuration
            restored, self.restored_message = load_last()
            if restored is not None:
                self.state.set_config(restored, source="restored")

        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self._sidebar())
        self.stack = QStackedWidget()
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)

        self.hardware_panel = HardwarePanel(self.state)
        self.config_editor = ConfigEditor(self.state)
        self.training_tab = TrainingTab(self.state)
        self.viewer = ViewerWidget()
        self.tools_page = ToolsPage(self.state)
        for name, page, icon_name in (("Hardware", self.hardware_panel, "page_hardware"),
                                      ("Configuration", self.config_editor, "page_config"),
                                      ("Training", self.training_tab, "page_training"),
                                      ("Viewer", self.viewer, "page_viewer"),
                                      ("Tools", self.tools_page, None)):
            self.add_page(name, page, icon(icon_name) if icon_name else None)
        self.sidebar.setCurrentRow(0)
        self.speed_card = SpeedCard(self.state)  # the measured speed beside the recommendation it checks
        self.hardware_panel.add_below_recommendation(self.speed_card)
        checklist = PreflightChecklist(self.state, title="Before you start", collapsible=True)
        self.training_tab.add_preflight(checklist)
        install_start_gate(self.training_tab, checklist)
        for listener in (self.tools_page.set_training, self.speed_card.set_enabled_for_training):
            self.training_tab.training_changed.connect(listener)  # trial runs would compete with the run
        self.training_tab.open_in_viewer.connect(self.open_in_viewer)
        self.training_close_guard = CloseGuard(self.training_tab, self)
        self.installEventFilter(self.training_close_guard)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(lambda: cancel_all(10_000))  # never leave a task's thread running at exit

        self._menus()
        self.run_status_item = run_status_item(self.training_tab, lambda: self.show_page("Training"))
        self.statusBar().addPermanentWidget(self.run_status_item)  # leftmost of the status bar's items
        self._status_bar()
        self.state.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.state.snapshot_changed.connect(self._show_hardware_status)
        self.state.dataset_changed.connect(self._show_dataset_status)
        self.config_editor.problems_changed.connect(self._show_problem_count)
        # The TOML file the form was last loaded from or saved to, and what it holds: quitting with
        # edits since then asks whether to write them back (they are kept for the next start anyway).
        self.config_file: tuple[str, dict] | None = None
        self.config_editor.file_synced.connect(
            lambda path: setattr(self, "config_file", (path, self.state.config.to_dict())))
        self.ask_save_file: Callable[[str], str] = self._ask_save_file  # "save" | "discard" | "cancel"
        self._show_dataset_status(self.state.dataset_path)
        self._show_problem_count(self.config_editor.problem_count())
        # Queued: fixing the folder inside the signal would hand later listeners the older config last.
        self.state.config_changed.connect(self._absolute_output_dir, Qt.ConnectionType.QueuedConnection)
        self._absolute_output_dir()
        self._save_timer = QTimer(self)  # the configuration is saved shortly after each change
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(800)
        self._save_timer.timeout.connect(self.save_session_config)
        if persist:
            self.state.config_changed.connect(lambda _c: self._save_timer.start())

        self.poller: Task | None = None
        if poll_hardware:
            self.poller = hardware_poller(probe_fn, poll_interval_ms, parent=self)
            self.poller.reported.connect(self._hardware_reported)
        self.resize(DEFAULT_SIZE)
        if persist:
            self._restore_settings()
        self.fit_to_screen()
        if self.restored_message:
            self.statusBar().showMessage(self.restored_message, 10_000)

    # ----- pages ---------------------------------------------------------------------------------
    def _sidebar(self) -> QWidget:
        box = QWidget()
        box.setObjectName("sidebarBox")
        box.setFixedWidth(200)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 16, 0, 12)
        layout.setSpacing(0)
        brand = QHBoxLayout()
        brand.setContentsMargins(18, 0, 12, 10)
        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(QSize(30, 30)))
        brand.addWidget(logo)
        names = QVBoxLayout()
        names.setSpacing(0)
        title = QLabel("medseg-gui")
        title.setObjectName("brand")
        title.setFont(style.scaled_font(self.font(), 1.1, bold=True))
        names.addWidget(title)
        sub = QLabel(f"version {__version__}")
        sub.setObjectName("brandSub")
        names.addWidget(sub)
        brand.addLayout(names, 1)
        layout.addLayout(brand)
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setIconSize(QSize(20, 20))
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.sidebar, 1)
        return box

    def add_page(self, name: str, widget: QWidget, page_icon: QIcon | None = None) -> int:
        """Append a page to the sidebar; Ctrl+N selects the N-th page. Returns its index."""
        if name in self._pages:
            raise ValueError(f"a page named {name!r} already exists; use replace_page")
        index = self.stack.addWidget(widget)
        item = QListWidgetItem(page_icon or QIcon(), name)
        item.setSizeHint(QSize(180, 40))
        self.sidebar.addItem(item)
        self._pages[name] = index
        if index < self.PAGE_SHORTCUTS:
            action = QAction(name, self)
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            action.triggered.connect(lambda _=False, n=name: self.show_page(n))
            self.addAction(action)
            self._page_actions.append(action)
            if hasattr(self, "view_menu"):
                self.view_menu.addAction(action)
        return index

    def page(self, name: str) -> QWidget:
        return self.stack.widget(self._pages[name])

    def page_names(self) -> list[str]:
        return sorted(self._pages, key=self._pages.get)

    def show_page(self, name: str) -> None:
        self.sidebar.setCurrentRow(self._pages[name])

    def current_page(self) -> str:
        index = self.stack.currentIndex()
        return next(n for n, i in self._pages.items() if i == index)

    # ----- menus and status ----------------------------------------------------------------------
    def _menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.wizard_action = self._action(file_menu, "New training &wizard…", self.open_wizard,
                                          QKeySequence.StandardKey.New)
        self.wizard_action.setStatusTip("Choose a dataset, get a configuration that fits this machine, train, "
                                        "view the masks")
        file_menu.addSeparator()
        self.open_dataset_action = self._action(file_menu, "Open &dataset…", self.open_dataset_dialog,
                                                QKeySequence.StandardKey.Open)
        self._action(file_menu, "Use the &demo dataset", lambda: self.state.set_dataset("demo"))
        self._action(file_menu, "Open &run…", self.open_run_dialog, "Ctrl+R")
        file_menu.addSeparator()
        self._action(file_menu, "Open &config…", self.open_config_dialog, "Ctrl+Shift+O")
        self.save_config_action = self._action(file_menu, "&Save config…", self.save_config_dialog,
                                               QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, "Ctrl+Q")  # StandardKey.Quit is empty on some platforms
        self.view_menu = bar.addMenu("&View")
        for action in self._page_actions:
            self.view_menu.addAction(action)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        self._action(help_menu, "&Documentation", self.open_documentation)
        help_menu.addSeparator()
        self._action(help_menu, "&About medseg-gui", self.show_about)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        return action

    def _status_bar(self) -> None:
        bar = self.statusBar()
        self.dataset_status = QLabel()
        self.hardware_status = QLabel("Reading hardware…")
        self.validity_status = QLabel()
        for widget in (self.dataset_status, self.hardware_status, self.validity_status):
            bar.addPermanentWidget(widget)
        bar.showMessage("Ready", 3000)

    def _show_dataset_status(self, path: str) -> None:
        self.dataset_status.setText("Dataset: built-in demo" if path == "demo" else f"Dataset: {path}")

    def _show_hardware_status(self, snapshot: HardwareSnapshot) -> None:
        if snapshot.gpus:
            gpu = max(snapshot.gpus, key=lambda g: g.free_gb or 0.0)
            free = "n/a" if gpu.free_gb is None else f"{gpu.free_gb:.1f} GB free"
            more = f" (+{len(snapshot.gpus) - 1})" if len(snapshot.gpus) > 1 else ""
            from medseg_gui.core.gpu_identity import gpu_label  # "GPU N" as training numbers it

            self.hardware_status.setText(f"{gpu_label(gpu)}: {free}{more}")
        else:
            self.hardware_status.setText("CPU mode")
        self.hardware_status.setToolTip(snapshot.nvml_error or "")

    def _show_problem_count(self, count: int) -> None:
        """The same count as the Configuration page's banner (both come from the editor)."""
        self.validity_status.setText("Config ready" if count == 0 else
                                     f"Config: {count} problem{'s' if count != 1 else ''}")

    def _absolute_output_dir(self, *_args) -> None:
        """A relative output folder ("runs") would land wherever the app was launched from: make a
        default, restored or loaded one absolute inside the app's data folder. What the user is typing
        is left alone (the form shows where it resolves)."""
        if self.state.config_source == "user":
            return
        value = self.state.config.training.output_dir
        fixed = absolute_output_dir(value)
        if fixed != value:
            self.state.edit_config(lambda c: setattr(c.training, "output_dir", fixed), source=self.state.config_source)

    # ----- intents -------------------------------------------------------------------------------
    def open_dataset_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open dataset folder")
        if path:
            self.state.set_dataset(path)
            self.statusBar().showMessage(f"Dataset: {path}", 5000)

    def open_run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open run folder")
        if path:
            self.open_run(path)

    def open_run(self, run_dir: str) -> None:
        """Re-plot a past run on the Training page."""
        self.show_page("Training")
        self.training_tab.open_run(run_dir)

    def open_in_viewer(self, bundle: str) -> None:
        """"Open best model in viewer": load the model and run it on the open image."""
        self.show_page("Viewer")
        self.viewer.load_model_and_run(bundle)

    def open_wizard(self, **kwargs):
        """File → New training wizard… (not modal; an open one is raised instead of a second one)."""
        self.wizard = open_wizard(self, self.wizard, **kwargs)
        return self.wizard

    def open_config_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open configuration", "", "TOML files (*.toml)")
        if path and self.config_editor.load_toml(path):
            self.show_page("Configuration")
        elif path:
            self.show_page("Configuration")  # the banner there explains what is wrong with the file

    def save_config_dialog(self) -> None:
        self.config_editor.save_dialog()

    def shortcuts(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every action with a shortcut, menus and pages alike."""
        rows = []
        for action in self.findChildren(QAction):
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if keys:
                rows.append((keys, action.text().replace("&", "").rstrip("…")))
        rows += [("Ctrl+scroll, arrows, PgUp/PgDn, Home/End", "Viewer: zoom and step through slices"),
                 ("Right-drag", "Viewer: window width (left-right) and level (up-down)")]
        return sorted(set(rows), key=lambda r: (len(r[0]) > 12, r[0]))

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td style='padding-right:16px'><b>{k}</b></td><td>{v}</td></tr>"
                       for k, v in self.shortcuts())
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(f"<table>{rows}</table>")
        box.open()
        self.shortcuts_box = box

    def open_documentation(self) -> bool:
        """Open the local README/docs in the system viewer; say where they are if that is not possible."""
        where = docs_location()
        if where is not None and QDesktopServices.openUrl(QUrl.fromLocalFile(str(where))):
            self.statusBar().showMessage(f"Opened {where}", 6000)
            return True
        text = (f"The documentation is at {where}." if where is not None else
                "The documentation (README.md and docs/) comes with the source of medseg-gui.")
        self.statusBar().showMessage(text, 10_000)
        return False

    def show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About medseg-gui")
        box.setIconPixmap(app_icon().pixmap(QSize(64, 64)))
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(about_text())
        box.exec()

    # ----- lifecycle -----------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().showEvent(event)
        if self.poller is not None and not self.poller.is_running() and not self.poller.cancel_requested:
            self.poller.start()

    def _hardware_reported(self, value: object) -> None:
        """The poller's snapshot, or the message of a failed poll (the next poll tries again)."""
        if isinstance(value, str):
            self.statusBar().showMessage(value, 6000)
        else:
            self.state.set_snapshot(value)

    def unsaved_file_edits(self) -> str | None:
        """The TOML file whose contents the form's configuration has moved away from, if any."""
        if self.config_file is None:
            return None
        path, saved = self.config_file

        def same_folder(d: dict) -> dict:  # "runs" made absolute after loading is not an edit
            return {**d, "training": {**d["training"],
                                      "output_dir": absolute_output_dir(d["training"]["output_dir"])}}
        return path if same_folder(saved) != same_folder(self.state.config.to_dict()) else None

    def _ask_save_file(self, path: str) -> str:
        answer = QMessageBox.question(
            self, "Save the configuration?",
            f"The configuration was changed since it was loaded from or saved to {path}. Save the changes "
            "to that file? (Either way, the app starts with them next time.)",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save)
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        path = self.unsaved_file_edits()
        if path is not None:
            answer = self.ask_save_file(path)
            if answer == "cancel" or (answer == "save" and not self.config_editor.save_toml(path)):
                event.ignore()  # a failed save explains itself on the Configuration page
                self.show_page("Configuration")
                return
        if self._persist:
            self.save_session_config()
            s = settings()
            s.setValue("window/geometry", self.saveGeometry())
            s.setValue("window/page", self.current_page())
            s.sync()
        self.stop_workers()
        super().closeEvent(event)

    def stop_workers(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            self.poller.wait(5000)
        self.viewer.shutdown()

    def save_session_config(self) -> None:
        """Keep the configuration for the next start (the form's edits never vanish on quit)."""
        self._save_timer.stop()
        if not self._persist:
            return
        try:
            save_last(self.state.config)
        except OSError as exc:
            self.statusBar().showMessage(f"Could not keep the configuration for the next start: {exc}", 10_000)

    def fit_to_screen(self) -> None:
        """Keep the whole window, frame included, inside the screen's available area."""
        fit_to_screen(self)

    def _restore_settings(self) -> None:
        s = settings()
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        page = s.value("window/page")
        if isinstance(page, str) and page in self._pages:
            self.show_page(page)
