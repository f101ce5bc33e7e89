"""Tools GUI (pytest-qt, offscreen): LR dialog, speed card, checklist rows and the gate before Start,
installation into the main window. Core functions are injected so these tests train nothing, except
the one that runs the real LR finder through the dialog's worker thread."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core.tools.benchmark import BenchmarkResult, TimeEstimate  # noqa: E402
from medseg_gui.core.tools.lr_find import LrFindResult  # noqa: E402
from medseg_gui.core.tools.preflight import CheckItem, PreflightReport  # noqa: E402
from medseg_gui.core.tools.trial_run import ToolError  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402
from medseg_gui.gui.tools import ToolsPage  # noqa: E402
from medseg_gui.gui.tools.checklist import PreflightChecklist, install_start_gate  # noqa: E402
from medseg_gui.gui.tools.lr_dialog import LrFinderDialog  # noqa: E402
from medseg_gui.gui.tools.speed_card import SpeedCard  # noqa: E402
from tests.gui_fakes import gpu, snapshot  # noqa: E402


def _curve(suggestion: float | None = 1e-3) -> LrFindResult:
    lrs = [10 ** (-7 + 7 * i / 39) for i in range(40)]
    losses = [1.0 - 0.5 / (1 + math.exp(-(math.log10(lr) + 3) * 3)) + (0.0 if lr < 0.1 else 5.0) for lr in lrs]
    msg = f"suggested learning rate {suggestion:.2e}" if suggestion else "only 8 batches: use a larger dataset or more steps"
    return LrFindResult(lrs, losses, suggestion, msg, batches=40)


def test_lr_dialog_plots_the_curve_marks_the_suggestion_and_uses_it(qtbot):
    state = AppState()
    calls = []

    def finder(config, num_training, progress, stop_event):
        calls.append((config.training.lr, num_training))
        for i in range(num_training):
            progress(i + 1, num_training)
        return _curve(1e-3)

    dialog = LrFinderDialog(state, finder)
    qtbot.addWidget(dialog)
    dialog.steps.setValue(20)
    dialog.run()
    qtbot.waitUntil(lambda: dialog.result is not None and dialog.run_button.isEnabled(), timeout=30_000)
    assert calls == [(3e-4, 20)]
    xs, ys = dialog.curve.getData()
    assert len(xs) == 40 and dialog.plot.getPlotItem().ctrl.logXCheck.isChecked()
    assert list(dialog.marker.xData) == [1e-3]  # data in LR units; the log-x axis shows -3
    assert list(dialog.marker.getData()[0]) == [pytest.approx(-3.0)]
    assert dialog.marker_line.isVisible() and dialog.marker_line.value() == pytest.approx(-3.0)
    assert dialog.use_button.isEnabled() and "(1e-3)" in dialog.use_button.text()
    changes = []
    state.config_changed.connect(changes.append)
    dialog.use_button.click()
    assert state.config.training.lr == pytest.approx(1e-3) and changes


def test_lr_dialog_draws_the_curve_while_the_search_runs_on_a_readable_axis(qtbot):
    import threading

    release = threading.Event()

    def finder(config, num_training, progress, stop_event, on_point):
        for i in range(10):
            on_point(10 ** (-7 + 0.5 * i), 1.0 - 0.05 * i)
            progress(i + 1, num_training)
        release.wait(10)  # the search is still "running" while the test looks at the plot
        return _curve(1e-3)

    dialog = LrFinderDialog(AppState(), finder)
    qtbot.addWidget(dialog)
    axis = dialog.plot.getAxis("bottom")
    empty_ticks = [v for _, values in axis.tickValues(-7, 0, 400) for v in values]
    labels = axis.tickStrings(empty_ticks, 1, 1)
    assert "1e-7" in labels and "1e-3" in labels and not {"2", "3", "9"} & set(labels)
    dialog.steps.setValue(20)
    dialog.run()
    try:
        qtbot.waitUntil(lambda: dialog.curve.getData()[0] is not None and len(dialog.curve.getData()[0]) == 10,
                        timeout=5000)
        assert dialog.result is None and dialog.job.is_running()
    finally:
        release.set()
    qtbot.waitUntil(lambda: dialog.result is not None and dialog.run_button.isEnabled(), timeout=5000)


def test_lr_dialog_without_a_suggestion_shows_the_message(qtbot):
    dialog = LrFinderDialog(AppState(), lambda config, **kw: _curve(None))
    qtbot.addWidget(dialog)
    dialog.run()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=30_000)
    assert not dialog.use_button.isEnabled() and not dialog.marker_line.isVisible()
    assert "Only 8 batches: use a larger dataset or more steps" in dialog.message.text()


def test_lr_dialog_reports_a_tool_error(qtbot):
    def finder(config, **kw):
        raise ToolError("training.pretrained: /x does not exist")

    dialog = LrFinderDialog(AppState(), finder)
    qtbot.addWidget(dialog)
    dialog.run()
    qtbot.waitUntil(lambda: "failed" in dialog.message.text(), timeout=30_000)
    assert "/x does not exist" in dialog.message.text() and dialog.run_button.isEnabled()


@pytest.mark.slow
def test_lr_dialog_with_the_real_finder_on_a_tiny_model(qtbot, tmp_path):
    """The real find_lr in the dialog's worker thread: the curve arrives and the GUI stays usable."""
    import torch

    from engine_helpers import FakeDataModule, tiny_config
    from medseg_gui.core.tools.lr_find import find_lr

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = AppState(tiny_config(tmp_path))
        dialog = LrFinderDialog(state, lambda config, **kw: find_lr(
            config, datamodule_factory=FakeDataModule(n_train=24), **kw))
        qtbot.addWidget(dialog)
        dialog.steps.setValue(20)
        dialog.run()
        qtbot.waitUntil(lambda: dialog.result is not None, timeout=120_000)
        assert len(dialog.curve.getData()[0]) > 10 and dialog.result.suggestion is not None
        assert dialog.progress.value() == dialog.progress.maximum()
    finally:
        torch.set_num_threads(threads)


def _measured(ips=50.0) -> BenchmarkResult:
    return BenchmarkResult(kind="measured", device="NVIDIA GeForce RTX 3060", variant="b2", batch_size=4,
                           image_size=256, precision="16-mixed", images_per_s=ips, ms_per_step=4000 / ips,
                           peak_vram_gb=1.6, device_used_gb=2.4, bottleneck="gpu compute", basis="measured: test",
                           time=TimeEstimate(1000, 200, 100, 250, 20.0, 2.0, 22.0, 2200.0))


def test_speed_card_shows_the_estimate_labelled_then_the_measurement(qtbot):
    state = AppState()
    state.set_snapshot(snapshot(gpu()))
    estimate = BenchmarkResult(kind="estimate", device="NVIDIA GeForce RTX 3060", variant="b2", batch_size=4,
                               image_size=256, precision="auto", images_per_s=12.0, ms_per_step=333.0,
                               basis="estimate (memory-bound: …). Run the benchmark to measure it on this card.")
    seen = []

    def known(config, gpu_info, train, val):
        seen.append(gpu_info.name if gpu_info else None)
        return estimate

    def bench(config, steps, progress, stop_event):
        progress(steps, steps)
        return _measured()

    card = SpeedCard(state, bench, known)
    qtbot.addWidget(card)
    assert seen and seen[-1] == "NVIDIA GeForce RTX 3060"
    assert card.badge.text() == "estimate" and "12.0" in card.figures.text()
    assert "Run the benchmark" in card.basis.text()
    card.run()
    qtbot.waitUntil(lambda: card.badge.text() == "measured", timeout=30_000)
    text = card.figures.text()
    assert "50.0" in text and "80</b> ms per step" in text and "Peak VRAM 1.60 GB" in text
    from medseg_gui.core.words import format_duration

    assert format_duration(22) in text and format_duration(2200) in text  # per epoch and whole run (100 epochs)
    card.set_enabled_for_training(True)
    assert not card.run_button.isEnabled()


def _report(*statuses: str) -> PreflightReport:
    return PreflightReport([CheckItem(f"c{i}", f"Check {i}", s, f"detail {i}", f"fix {i}") for i, s in
                            enumerate(statuses)])


def test_checklist_rows_are_coloured_with_the_fix(qtbot):
    state = AppState()
    checklist = PreflightChecklist(state, lambda config: _report("ok", "warn", "fail"))
    qtbot.addWidget(checklist)
    with qtbot.waitSignal(checklist.report_ready, timeout=30_000):
        checklist.check()
    assert [row.property("status") for row in checklist.rows] == ["ok", "warn", "fail"]
    assert "Fix: fix 2" in checklist.rows[2].text.text() and "Fix" not in checklist.rows[0].text.text()
    assert "1 problem to fix" in checklist.summary.text()
    assert checklist.report_for(state.config) is not None
    state.set_value("training.batch_size", 3)
    assert checklist.report_for(state.config) is None  # a changed config needs a new check
    assert "changed" in checklist.summary.text()


class _FakeTab:
    """Only what the gate needs from the Training tab: start(resume_from=, config=) and start_gate."""

    def __init__(self):
        self.start_gate = None
        self.started = []

    def start(self, resume_from=None, config=None):
        if self.start_gate is not None and not self.start_gate(config, resume_from):
            return False
        self.started.append(config)
        return True


def test_gate_checks_before_start_blocks_on_red_and_offers_start_anyway(qtbot):
    state = AppState()
    verdict = {"statuses": ("ok", "fail")}
    checklist = PreflightChecklist(state, lambda config: _report(*verdict["statuses"]))
    qtbot.addWidget(checklist)
    tab = _FakeTab()
    install_start_gate(tab, checklist)
    assert tab.start(config=state.config) is False  # checks first, in the background
    qtbot.waitUntil(lambda: checklist.report is not None, timeout=30_000)
    assert tab.started == [] and checklist.anyway_button.isHidden()
    assert tab.start(config=state.config) is False  # red: refused, "Start anyway" offered
    assert not checklist.anyway_button.isHidden()
    checklist.anyway_button.click()
    assert len(tab.started) == 1
    # all green: the start continues by itself once the check is back
    verdict["statuses"] = ("ok", "warn")
    state.set_value("training.epochs", 7)
    assert tab.start(config=state.config) is False
    qtbot.waitUntil(lambda: len(tab.started) == 2, timeout=30_000)
    assert tab.started[-1].training.epochs == 7


def test_installed_in_the_main_window(qtbot):
    from medseg_gui.gui.main_window import MainWindow

    checks = []
    window = MainWindow(poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    assert "Tools" in window.page_names() and isinstance(window.page("Tools"), ToolsPage)
    assert window.speed_card.parentWidget() is window.hardware_panel.recommendation.parentWidget()
    assert isinstance(window.training_tab.preflight, PreflightChecklist)
    assert window.training_tab.start_gate is not None
    window.training_tab.preflight.checker = lambda config: checks.append(config) or _report("fail")
    assert window.training_tab.start() is False
    qtbot.waitUntil(lambda: bool(checks), timeout=30_000)
    assert not window.training_tab.is_training()
    page = window.page("Tools")
    assert "quick check: SegFormer-b0" in page.plan_label.text()
    window.training_tab.training_changed.emit(True)
    assert not page.lr_button.isEnabled()


def test_benchmark_bar_and_label_agree_and_precision_is_named(qtbot):
    import threading

    state = AppState()
    release = threading.Event()
    phases = []

    def bench(config, steps, progress, stop_event):
        progress(3, 25)
        phases.append("steps")
        release.wait(10)
        progress(25, 25)  # the timed steps are done: validation is next
        release.clear()
        phases.append("validation")
        release.wait(10)
        return _measured()

    card = SpeedCard(state, bench, lambda *a: None)
    qtbot.addWidget(card)
    card.run()
    try:
        qtbot.waitUntil(lambda: "step 3 of 25" in card.basis.text(), timeout=10_000)
        assert card.progress.maximum() == 25 and card.progress.value() == 3
        release.set()
        qtbot.waitUntil(lambda: "validation" in card.basis.text(), timeout=10_000)
        assert card.progress.maximum() == 0  # busy, not a full bar under a "still working" label
    finally:
        release.set()
    qtbot.waitUntil(lambda: card.badge.text() == "measured", timeout=10_000)
    assert "16-bit mixed precision" in card.figures.text()


def test_a_check_anywhere_answers_every_checklist(qtbot):
    """The Training page's check is the Tools page's too: no "Not checked yet" right after it."""
    state = AppState()
    training = PreflightChecklist(state, lambda config: _report("ok", "warn"), collapsible=True)
    tools = PreflightChecklist(state, lambda config: _report("ok", "warn"))
    for w in (training, tools):
        qtbot.addWidget(w)
    assert "Not checked" in tools.summary.text()
    with qtbot.waitSignal(training.report_ready, timeout=30_000):
        training.check()
    assert tools.report is training.report and tools.summary.text() == "Ready · 1 warning"
    assert tools.report_for(state.config) is training.report
    late = PreflightChecklist(state, lambda config: _report("ok"))  # a page built after the check
    qtbot.addWidget(late)
    assert late.summary.text() == "Ready · 1 warning"


def test_checklist_folds_to_one_line(qtbot):
    state = AppState()
    checklist = PreflightChecklist(state, lambda config: _report(*["ok"] * 8, "warn"), collapsible=True)
    qtbot.addWidget(checklist)
    checklist.resize(900, 600)
    checklist.show()
    with qtbot.waitSignal(checklist.report_ready, timeout=30_000):
        checklist.check()
    open_height = checklist.sizeHint().height()
    checklist.set_collapsed(True)
    assert not checklist.rows_area.isVisible() and checklist.toggle_button.text() == "Show ▸"
    assert checklist.sizeHint().height() < 60 < open_height  # one line instead of nine rows
    checklist.toggle_button.click()
    assert checklist.rows_area.isVisible() and not checklist.collapsed
    assert checklist.rows_area.maximumHeight() <= PreflightChecklist.ROWS_MAX_HEIGHT
    checklist.set_collapsed(True)
    checklist.set_report(_report("ok", "fail"), state.config)  # red must be seen: it unfolds
    assert not checklist.collapsed
