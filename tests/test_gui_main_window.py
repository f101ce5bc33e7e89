"""Main window: pages and placeholders, shortcuts, menus, status bar, settings; start-up self-test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from fake_nvml import FakeGpu, make_nvml
from gui_fakes import cpu_snapshot, gpu, snapshot
from medseg_gui.core.hardware import probe
from medseg_gui.gui import main_window as mw
from medseg_gui.gui.main_window import MainWindow
from medseg_gui.gui.state import AppState

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "transformers", "albumentations")


@pytest.fixture
def window(qtbot):
    win = MainWindow(AppState(), poll_hardware=False, persist=False)
    qtbot.addWidget(win)
    return win


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), **extra)
    return env


def show_active(window, qtbot):
    """Window shortcuts only fire in the active window."""
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=30_000)


def test_the_window_builds_its_pages_itself(window, qtbot):
    assert window.page_names() == ["Hardware", "Configuration", "Training", "Viewer", "Tools"]
    pages = (window.hardware_panel, window.config_editor, window.training_tab, window.viewer, window.tools_page)
    assert [window.page(n) for n in window.page_names()] == list(pages)
    assert window.speed_card.parentWidget() is window.hardware_panel.recommendation.parentWidget()
    assert window.training_tab.preflight is not None and window.training_tab.start_gate is not None
    show_active(window, qtbot)
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.stack.currentWidget() is window.training_tab
    with pytest.raises(ValueError):
        window.add_page("Training", QLabel())


def test_shortcuts_switch_pages(window, qtbot):
    show_active(window, qtbot)
    for key, name in ((Qt.Key.Key_2, "Configuration"), (Qt.Key.Key_4, "Viewer"), (Qt.Key.Key_1, "Hardware")):
        qtbot.keyClick(window, key, Qt.KeyboardModifier.ControlModifier)
        assert window.current_page() == name
    shortcuts = {a.text(): a.shortcut().toString() for a in window.findChildren(type(window._page_actions[0]))}
    assert shortcuts["&Quit"] == "Ctrl+Q" and shortcuts["&Save config…"] == "Ctrl+S"
    assert shortcuts["Open &dataset…"] == "Ctrl+O"


def test_status_bar_follows_state(window, tmp_path):
    window.state.set_snapshot(cpu_snapshot())
    assert window.hardware_status.text() == "CPU mode"
    assert "no NVIDIA driver" in window.hardware_status.toolTip()
    window.state.set_snapshot(snapshot(gpu(used=2.0)))
    assert window.hardware_status.text() == "GPU 0: 10.0 GB free"
    window.state.set_dataset(str(tmp_path))
    assert window.dataset_status.text() == f"Dataset: {tmp_path}"
    assert window.state.config.dataset.path == str(tmp_path)
    window.state.set_value("training.batch_size", 0)
    assert window.validity_status.text() == "Config: 1 problem"


def test_problem_count_is_the_same_in_banner_and_status_bar(window, tmp_path):
    """A missing dataset folder is a problem at once (not only at Start); every count agrees."""
    editor = window.config_editor
    window.state.set_dataset(str(tmp_path / "no-such-folder"))
    assert window.validity_status.text() == "Config: 1 problem"
    assert editor.banner.text().startswith("1 problem to fix") and "Dataset" in editor.banner.text()
    error = editor.errors()["dataset.path"]
    assert "not found" in error and "Browse…" in error and "wizard" in error
    window.state.set_value("training.epochs", 0)
    window.state.set_value("training.batch_size", 0)
    assert window.validity_status.text() == "Config: 3 problems"
    assert editor.banner.text().startswith("3 problems to fix")
    for label in ("Dataset", "Epochs", "Batch size"):  # labels, not keys
        assert label in editor.banner.text()
    assert "training." not in editor.banner.text()


def test_about_reports_versions_without_importing_heavy_modules():
    before = {m for m in HEAVY if m in sys.modules}
    text = mw.about_text()
    assert {m for m in HEAVY if m in sys.modules} == before
    assert "Python" in text and "PySide6" in text
    for name in HEAVY:
        if name not in before:
            assert f">{name}</td><td>not loaded yet</td>" in text


def test_geometry_and_page_are_remembered(qtbot, _isolated_home):
    first = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(first)
    first.show()
    # The offscreen screen is 800x600 and the window's minimum width is larger, so only the height
    # can be compared exactly (restoreGeometry clamps the width to the screen).
    first.resize(first.width(), 500)
    size = first.size()
    assert size.height() != 860, "differs from the default size"
    first.show_page("Configuration")
    first.close()
    assert (_isolated_home / "settings.ini").exists()
    assert "geometry" in (_isolated_home / "settings.ini").read_text()
    second = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(second)
    assert second.height() == size.height()
    assert second.current_page() == "Configuration"


def test_live_poller_feeds_the_window_and_stops_on_close(qtbot):
    nvml = make_nvml([FakeGpu(name="Fake RTX 4090", total_gb=24.0, used_gb=1.0, cc=(8, 9))])
    win = MainWindow(AppState(), probe_fn=lambda: probe(nvml=nvml), poll_interval_ms=50, persist=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.state.recommendation_changed, timeout=30_000):
        win.show()
    assert "Fake RTX 4090" in next(iter(win.hardware_panel.gpu_cards.values())).title.text()
    assert win.state.recommendation.tier.name == "high"
    win.close()
    assert not win.poller.is_running()


def run_self_test(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "medseg_gui", "--self-test", *args], cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_self_test_prints_json_with_no_heavy_modules(tmp_path):
    result = run_self_test(str(tmp_path))
    assert result["heavy_modules_loaded"] == {name: False for name in HEAVY}
    assert 0 < result["first_paint_ms_since_app_import"] <= result["first_paint_ms"] < 60_000
    assert result["python"] == ".".join(map(str, sys.version_info[:3]))
    assert result["qt"] and result["platform"] == "offscreen"
    assert result["dataset"] == str(tmp_path)


def test_gui_modules_import_no_heavy_libraries():
    code = ("import sys, importlib, pkgutil, medseg_gui.gui as g\n"
            "for m in pkgutil.iter_modules(g.__path__):\n"
            "    importlib.import_module('medseg_gui.gui.' + m.name)\n"
            "import medseg_gui.gui.main_window\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_configuration_edits_survive_a_restart(qtbot, _isolated_home):
    """128 px / batch 4 / 1 epoch must come back as 128 / 4 / 1, not as the recommendation."""
    first = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(first)
    first.state.set_snapshot(cpu_snapshot())  # a recommendation arrives and becomes the config
    for dotted, value in (("dataset.image_size", 128), ("training.batch_size", 4), ("training.epochs", 1)):
        first.state.set_value(dotted, value)
    first.close()
    saved = _isolated_home / "last_config.toml"
    assert saved.is_file() and "image_size = 128" in saved.read_text()

    second = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(second)
    second.state.set_snapshot(cpu_snapshot())  # the recommendation must not replace the restored edits
    tr, ds = second.state.config.training, second.state.config.dataset
    assert (ds.image_size, tr.batch_size, tr.epochs) == (128, 4, 1)
    assert second.state.config_source == "restored"
    assert "Restored the configuration" in second.restored_message
    assert second.config_editor.rows["training.batch_size"].editor.get() == 4


def test_edits_are_saved_without_closing_and_a_bad_file_is_kept(qtbot, _isolated_home):
    window = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(window)
    window.state.set_value("training.epochs", 7)
    saved = _isolated_home / "last_config.toml"
    qtbot.waitUntil(lambda: saved.is_file() and "epochs = 7" in saved.read_text(), timeout=10_000)
    window._persist = False  # as if the app crashed: no save on close
    window.close()
    saved.write_text("this is [not toml")
    again = MainWindow(AppState(), poll_hardware=False)
    qtbot.addWidget(again)
    assert "could not be read" in again.restored_message
    assert (_isolated_home / "last_config.toml.unreadable").read_text() == "this is [not toml"
    assert again.state.config.training.epochs == AppState().config.training.epochs


def test_output_folder_is_absolute_in_the_app_data_folder(window, _isolated_home, qtbot):
    assert window.state.config.training.output_dir == str(_isolated_home / "runs")
    window.state.set_snapshot(cpu_snapshot())  # the recommendation keeps it
    qtbot.waitUntil(lambda: Path(window.state.config.training.output_dir).is_absolute(), timeout=30_000)
    assert window.state.config.training.output_dir == str(_isolated_home / "runs")


def test_window_fits_the_screen(window):
    window.show()
    area = window.screen().availableGeometry()  # 800 x 800 offscreen; the real 1366 x 768: test_pages_1366
    assert window.height() <= area.height() < 860
    assert window.width() <= max(area.width(), window.minimumSizeHint().width())


def test_help_menu_lists_shortcuts_and_opens_local_documentation(window, monkeypatch):
    help_menu = window.menuBar().actions()[-1].menu()
    texts = [a.text() for a in help_menu.actions()]
    assert "&Keyboard shortcuts" in texts and "&Documentation" in texts and "&About medseg-gui" in texts
    rows = dict(window.shortcuts())
    assert rows["Ctrl+Q"] == "Quit" and rows["Ctrl+2"] == "Configuration" and rows["F1"] == "Keyboard shortcuts"
    opened = []
    monkeypatch.setattr(mw.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    assert window.open_documentation()
    assert opened and Path(opened[0]).exists() and Path(opened[0]).name in ("README.md", "docs")


def test_quitting_with_edits_to_a_loaded_file_asks_to_save_them(window, tmp_path, qtbot):
    from medseg_gui.core import config as cfg
    path = tmp_path / "run.toml"
    cfg.save(cfg.RunConfig(), path)
    assert window.config_editor.load_toml(path)
    asked: list[str] = []
    window.ask_save_file = lambda p: asked.append(p) or answers.pop(0)
    window.show()
    qtbot.waitUntil(lambda: Path(window.state.config.training.output_dir).is_absolute(), timeout=5000)
    assert window.unsaved_file_edits() is None  # "runs" made absolute is not an edit of the user's
    answers = ["cancel"]
    window.state.set_value("training.epochs", 3)
    assert window.unsaved_file_edits() == str(path)
    assert not window.close() and window.isVisible() and asked == [str(path)]  # Cancel keeps the app open
    answers = ["save"]
    assert window.close()
    assert cfg.load(path).training.epochs == 3  # written back to the file the user loaded
    assert window.unsaved_file_edits() is None


def test_quitting_without_file_edits_does_not_ask(window, tmp_path):
    window.ask_save_file = lambda p: pytest.fail("nothing to ask: no file was loaded")
    window.state.set_value("training.epochs", 3)
    window.show()
    assert window.close()
