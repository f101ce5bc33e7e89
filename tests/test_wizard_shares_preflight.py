"""The wizard's pre-flight check answers the main window's checklists (pytest-qt, offscreen): right after
the wizard checked a configuration, the Tools page must not say "Not checked yet" for it."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core.tools.preflight import CheckItem, PreflightReport  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402
from medseg_gui.gui.tools import ToolsPage  # noqa: E402
from medseg_gui.gui import workers  # noqa: E402
from medseg_gui.gui.wizard import config_page  # noqa: E402
from tests.test_wizard import make_wizard, start_config, to_config_page  # noqa: E402


@pytest.fixture(autouse=True)
def _no_leftover_tasks():
    yield
    assert workers.cancel_all(30_000), "a wizard background job did not end"


def test_a_check_in_the_wizard_shows_on_the_tools_page(qtbot, monkeypatch):
    from medseg_gui.gui.main_window import MainWindow

    made: list[PreflightReport] = []

    def fake_preflight(_config, _snapshot, _report):
        made.append(PreflightReport([CheckItem("fake", "Fake item from the wizard", "ok", "")]))
        return made[-1]

    monkeypatch.setattr(config_page, "run_preflight", fake_preflight)
    window = MainWindow(AppState(start_config()), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    tools = window.findChild(ToolsPage)
    assert tools is not None and tools.checklist.summary.text() == "Not checked yet."
    wizard = make_wizard(qtbot, window)
    to_config_page(qtbot, wizard)
    wizard.state.set_value("training.epochs", 2)  # the wizard's configuration differs from the window's
    qtbot.waitUntil(lambda: wizard.config_page.preflight_report is not None
                    and wizard.config_page.preflight_report.items[0].title == "Fake item from the wizard"
                    and not wizard.config_page.checklist.is_checking(), timeout=30_000)
    report = wizard.config_page.preflight_report
    assert window.state.preflight_for(wizard.state.config) is report
    # a check of another configuration does not answer for the window's own one
    assert window.state.preflight_for(window.state.config) is not report or \
        window.state.config.to_dict() == wizard.state.config.to_dict()
    # the wizard hands its configuration over (Finish does this): the Tools checklist shows the check at once
    window.state.set_config(wizard.state.config, source="wizard")
    assert tools.checklist.report is report
    assert tools.checklist.summary.text() != "Not checked yet."
    assert [row for row in tools.checklist.rows]  # the rows are there, not an empty box
    with qtbot.waitSignal(wizard.rejected, timeout=30_000):
        wizard.reject()


def test_the_state_remembers_a_check_per_configuration():
    state = AppState(start_config())
    first, second = start_config(), start_config()
    second.training.epochs = first.training.epochs + 1
    report_a, report_b = PreflightReport([]), PreflightReport([])
    state.set_preflight(report_a, first)
    state.set_preflight(report_b, second)
    assert state.preflight_for(first) is report_a  # the newer check of another config does not hide it
    assert state.preflight_for(second) is report_b
    other = start_config()
    other.training.epochs = first.training.epochs + 5
    assert state.preflight_for(other) is None
