"""Pages fit a 1366 x 768 laptop: the Training, Viewer and Tools pages need at most 700 px of height,
and on the Training page a run's plots keep their room while the pre-flight checklist is folded."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core.tools.preflight import CheckItem, PreflightReport  # noqa: E402
from medseg_gui.gui.main_window import MainWindow  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402

MAX_PAGE_HEIGHT = 700


@pytest.fixture
def window(qtbot):
    win = MainWindow(AppState(), poll_hardware=False, persist=False)
    qtbot.addWidget(win)
    win.resize(1366, 740)
    win.show()
    return win


def _long_report() -> PreflightReport:
    items = [CheckItem(f"c{i}", f"Check {i}", "warn" if i == 3 else "ok",
                       "what was found, in a sentence long enough to wrap on a laptop screen " * 2, "the fix")
             for i in range(10)]
    return PreflightReport(items)


def test_pages_need_at_most_700_px(window, qtbot):
    tab = window.training_tab
    window.show_page("Training")
    tab.preflight.set_report(_long_report(), window.state.config)
    qtbot.wait(10)
    assert tab.minimumSizeHint().height() <= MAX_PAGE_HEIGHT  # the checklist unfolded (it scrolls)
    tab.preflight.set_collapsed(True)
    assert tab.minimumSizeHint().height() <= MAX_PAGE_HEIGHT
    for name in ("Viewer", "Tools"):
        window.show_page(name)
        assert window.page(name).minimumSizeHint().height() <= MAX_PAGE_HEIGHT, name


def test_folded_checklist_leaves_the_plots_their_room(window, qtbot):
    tab = window.training_tab
    window.show_page("Training")
    tab.preflight.set_report(_long_report(), window.state.config)
    tab.training_changed.emit(True)  # what a started run does: the checklist folds to one line
    assert tab.preflight.collapsed and tab.preflight.summary.text() == "Ready · 1 warning"
    qtbot.waitUntil(lambda: tab.view.loss_plot.height() >= 150, timeout=5000)
    assert tab.view.lr_plot.height() >= 150
    tab.training_changed.emit(False)
    assert not tab.preflight.collapsed
