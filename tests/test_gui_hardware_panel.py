"""Hardware page: GPU cards, CPU-mode card, recommendation card, what-if, and the poller thread."""

from __future__ import annotations

import html

import pytest
from PySide6.QtCore import Qt, QTimer

from fake_nvml import FakeGpu, make_nvml
from gui_fakes import cpu_snapshot, gpu, snapshot
from medseg_gui.core import config as cfg
from medseg_gui.core.config import RunConfig
from medseg_gui.core.hardware import probe
from medseg_gui.core.planning.recommend import recommend
from medseg_gui.core.planning.tiers import tier_for_vram
from medseg_gui.gui.hardware_panel import HardwarePanel
from medseg_gui.gui.state import AppState
from medseg_gui.gui.workers import hardware_poller


@pytest.fixture
def panel(qtbot):
    state = AppState(RunConfig())
    widget = HardwarePanel(state)
    qtbot.addWidget(widget)
    return widget


def test_one_card_per_gpu_with_its_readings(panel):
    panel.state.set_snapshot(snapshot(gpu(0, used=2.6, ours=0.5), gpu(1, name="NVIDIA A100", total=40.0,
                                                                        used=1.0, cc=(8, 0))))
    assert len(panel.gpu_cards) == 2
    card0, card1 = (panel.gpu_cards[k] for k in sorted(panel.gpu_cards))
    assert "NVIDIA GeForce RTX 3060" in card0.title.text() and "NVIDIA A100" in card1.title.text()
    assert "550.54" in card0.details.text() and "Compute capability 8.6" in card0.details.text()
    assert card0.stat_values["util"].text() == "37 %"
    assert card0.stat_values["temp"].text() == "61 °C"
    assert card0.stat_values["power"].text() == "95 / 170 W"
    (ours, _c1), (others, _c2) = card0.vram_bar.segments()
    assert ours == pytest.approx(0.5) and others == pytest.approx(2.1)
    assert "Free 9.4 GB" in card0.vram_legend.text()
    assert panel.cpu_card is None


def test_sparklines_accumulate_history(panel):
    for util in (10.0, 20.0, 30.0):
        panel.state.set_snapshot(snapshot(gpu(util=util)))
    card = next(iter(panel.gpu_cards.values()))
    x, y = card.spark_util.curve.getData()
    assert list(y) == [10.0, 20.0, 30.0]
    assert all(v <= 0 for v in x), "x is seconds ago"
    assert card.spark_util.value.text() == "30 %"


def test_missing_readings_are_na_not_zero(panel):
    panel.state.set_snapshot(snapshot(gpu(util=None, temp=None, cc=None)))
    card = next(iter(panel.gpu_cards.values()))
    assert card.stat_values["util"].text() == "n/a"
    assert card.stat_values["temp"].text() == "n/a"
    assert "Compute capability n/a" in card.details.text()


def test_gpu_set_change_rebuilds_cards(panel):
    panel.state.set_snapshot(snapshot(gpu(0), gpu(1)))
    assert len(panel.gpu_cards) == 2
    panel.state.set_snapshot(snapshot(gpu(0)))
    assert len(panel.gpu_cards) == 1


def test_cpu_mode_card_says_why(panel):
    panel.state.set_snapshot(snapshot(gpu()))
    panel.state.set_snapshot(cpu_snapshot())
    assert panel.gpu_cards == {}
    assert panel.cpu_card is not None
    assert "no nvidia driver found" in panel.cpu_card.reason.text().lower()
    assert "Test CPU" not in panel.cpu_card.cpu.text()  # a real cpu_only_snapshot names the real CPU
    assert "6.0 / 16.0 GB" == panel.cpu_card.ram_total.text()
    assert "No usable GPU" in panel.subtitle.text()


def test_recommendation_card_shows_core_recommendation(panel):
    snap = snapshot(gpu(used=2.6))
    panel.state.set_snapshot(snap)
    expected = recommend(snap, base=RunConfig())
    card = panel.recommendation
    assert card.tier.text() == expected.tier.label
    assert card.values["model"].text() == f"SegFormer-{expected.config.training.variant}"
    assert card.values["batch"].text().startswith(str(expected.config.training.batch_size))
    for reason in expected.reasons:
        assert html.escape(reason) in card.reasons.text()
    assert expected.warnings, "2.1 GB used by others must warn"
    assert not card.warnings.isHidden()
    assert "other programs" in card.warnings.text()


def test_use_this_configuration_sets_the_config(qtbot):
    start = RunConfig()
    start.training.batch_size = 3
    state = AppState(start)
    panel = HardwarePanel(state)
    qtbot.addWidget(panel)
    state.set_snapshot(snapshot(gpu()))
    button = panel.recommendation.use_button
    assert button.isEnabled(), "config differs from the recommendation"
    with qtbot.waitSignal(state.config_changed):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert cfg.diff(state.config, state.recommendation.config) == {}
    assert state.config.training.batch_size == state.recommendation.config.training.batch_size
    assert not button.isEnabled()


def test_what_if_control_both_directions(panel):
    panel.state.set_snapshot(snapshot(gpu(total=24.0, used=1.0)))
    card = panel.recommendation
    gpu_tier = panel.state.recommendation.tier.name
    assert card.vram.value() == 0 and card.vram.text() == "this computer"
    # widget -> state
    card.vram.setValue(4.0)
    assert panel.state.what_if_vram_gb == 4.0
    assert panel.state.recommendation.tier.name == tier_for_vram(4.0).name != gpu_tier
    assert card.tier.text() == tier_for_vram(4.0).label
    assert "what-if" in card.source.text()
    # state -> widget
    panel.state.set_what_if(10.0)
    assert card.vram.value() == 10.0
    assert card.tier.text() == tier_for_vram(10.0).label
    card.vram.setValue(0.0)  # back to this computer
    assert panel.state.what_if_vram_gb is None and card.vram.text() == "this computer"
    assert panel.state.recommendation.tier.name == gpu_tier


def test_plan_for_a_card_on_a_computer_without_gpu(panel):
    """No "Use my GPU [8.0 GB free]" on a CPU machine: one control, which plans for this computer at first."""
    panel.state.set_snapshot(cpu_snapshot())
    card = panel.recommendation
    assert not hasattr(card, "use_gpu")
    assert card.vram.text() == "this computer" and panel.state.recommendation.tier.name == "cpu"
    card.vram.setValue(8.0)
    assert panel.state.recommendation.tier.name == tier_for_vram(8.0).name == "entry"


def test_first_recommendation_replaces_untouched_defaults_only(qtbot):
    fresh = AppState()
    fresh.set_snapshot(snapshot(gpu(total=6.0, used=0.5)))
    assert fresh.config_source == "recommended"
    assert fresh.differences() == {}
    given = RunConfig()
    given.training.epochs = 7
    kept = AppState(given)
    kept.set_snapshot(snapshot(gpu(total=6.0, used=0.5)))
    assert kept.config.training.epochs == 7


def test_poller_thread_reads_fake_nvml_and_stops(qtbot):
    nvml = make_nvml([FakeGpu(name="Fake RTX", used_gb=3.0)])
    poller = hardware_poller(lambda: probe(nvml=nvml), interval_ms=50)
    with qtbot.waitSignal(poller.reported, timeout=30_000) as blocker:
        poller.start()
    snap = blocker.args[0]
    assert snap.gpus[0].name == "Fake RTX"
    assert snap.gpus[0].used_gb == pytest.approx(3.0)
    with qtbot.waitSignal(poller.reported, timeout=30_000):
        pass  # it keeps polling
    poller.cancel()
    assert poller.wait(30_000) and not poller.is_running()


def test_poller_reports_a_failing_probe(qtbot):
    def broken():
        raise RuntimeError("driver went away")
    poller = hardware_poller(broken, interval_ms=50)
    with qtbot.waitSignal(poller.reported, timeout=30_000) as blocker:
        poller.start()
    assert isinstance(blocker.args[0], str) and "driver went away" in blocker.args[0]
    with qtbot.waitSignal(poller.reported, timeout=30_000):
        pass  # a failed poll does not end the poller: the next one tries again
    poller.cancel()
    assert poller.wait(30_000)


def test_slow_probe_does_not_block_the_gui_thread(qtbot):
    """A probe that stalls (a throttling card) must not delay timers on the GUI thread.

    The probe is held until the GUI thread's timer has fired, so the check needs no wall-clock bound
    (which a loaded machine would break): had the probe run on the GUI thread, the timer could not fire
    while it was held, and the probe would end by its own timeout instead of being released.
    """
    import threading

    entered, release, released = threading.Event(), threading.Event(), []

    def slow():
        entered.set()
        released.append(release.wait(60))
        return cpu_snapshot()
    poller = hardware_poller(slow, interval_ms=10)
    poller.start()
    try:
        qtbot.waitUntil(entered.is_set, timeout=30_000)  # the worker is now inside a stalled probe
        fired = []
        QTimer.singleShot(20, lambda: fired.append(not release.is_set()))
        qtbot.waitUntil(lambda: bool(fired), timeout=30_000)
        assert fired[0]  # the timer ran while the probe was still stalled
    finally:
        release.set()
        poller.cancel()
        assert poller.wait(30_000)
    assert released and released[0]


def test_tier_names_and_ranges_agree_in_badge_reasons_and_table(panel):
    from medseg_gui.core.planning.tiers import TIERS

    panel.state.set_snapshot(snapshot(gpu(total=8.0, used=0.5)))
    rec = panel.state.recommendation
    assert panel.recommendation.tier.text() == rec.tier.label == "Entry (5-9 GB free)"
    assert html.escape(f"Tier {rec.tier.label}:") in panel.recommendation.reasons.text()
    table = panel.tiers.table
    for row, tier in enumerate(TIERS):
        assert f"{table.item(row, 0).text()} ({table.item(row, 1).text()})" == tier.label
        assert table.item(row, 6).text() == tier.example_gpus


def test_typical_cards_wrap_instead_of_being_cut_off(panel, qtbot):
    panel.resize(900, 700)
    panel.show()
    qtbot.waitExposed(panel)
    table = panel.tiers.table
    assert table.textElideMode() == Qt.TextElideMode.ElideNone and table.wordWrap()
    col = table.columnCount() - 1
    metrics = table.fontMetrics()
    for row in range(table.rowCount()):
        text = table.item(row, col).text()
        lines = max(1, -(-metrics.horizontalAdvance(text) // max(1, table.columnWidth(col) - 8)))
        assert table.rowHeight(row) >= min(lines, 2) * metrics.lineSpacing(), (text, table.columnWidth(col))
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    assert table.height() >= rows  # every row shown, none scrolled away


def test_cards_are_numbered_as_cuda_numbers_them_and_hidden_cards_cannot_be_ticked(panel):
    from medseg_gui.core.hardware import assign_cuda_indices

    snap = snapshot(gpu(0, name="Card A"), gpu(1, name="Card B"))
    assign_cuda_indices(snap.gpus, "1", "PCI_BUS_ID", use_env=False)
    snap.cuda_visible_devices, snap.cuda_device_order = "1", "PCI_BUS_ID"
    panel.state.set_snapshot(snap)
    from medseg_gui.gui.hardware_panel import GpuCard

    widgets = (panel.cards.itemAt(i).widget() for i in range(panel.cards.count()))
    first, second = [w for w in widgets if isinstance(w, GpuCard)]
    assert first.title.text() == "GPU 0 · Card B" and "nvidia-smi #1" in first.details.text()
    assert "hidden from CUDA" in second.title.text() and not second.use.isEnabled()
    assert first.use.isChecked()  # the only card training can use is the one planned for
    assert "GPU 0 (Card B)" in panel.recommendation.source.text()


def test_ticking_gpus_feeds_the_recommendation_and_the_config(qtbot):
    panel = HardwarePanel(AppState())  # a fresh window: the configuration is the recommendation
    qtbot.addWidget(panel)
    snap = snapshot(gpu(0, total=24.0, used=1.0), gpu(1, total=24.0, used=14.0))
    panel.state.set_snapshot(snap)
    cards = {k[0]: c for k, c in panel.gpu_cards.items()}
    assert cards[0].use.isChecked() and not cards[1].use.isChecked()  # the most free card, recommended
    assert panel.state.config.training.gpus == ["GPU-0"]
    cards[1].use.setChecked(True)
    state = panel.state
    assert state.config.training.gpus == ["GPU-0", "GPU-1"] and state.config.training.devices == 2
    rec = state.recommendation
    assert [g.uuid for g in rec.gpus] == ["GPU-0", "GPU-1"] and rec.free_gb == pytest.approx(10.0)
    assert state.differences() == {}, "an untouched configuration follows the plan for the ticked cards"
    assert "Planned for 2 GPUs (GPU 0, GPU 1)" in panel.recommendation.source.text()
    assert panel.recommendation.values["batch"].text().startswith(f"{rec.config.training.batch_size} × 2 GPUs")
    from medseg_gui.gui.training.worker import TrainingRunner

    assert TrainingRunner.uses_child_process(state.config)  # several GPUs: the child process
    cards[0].use.setChecked(False)
    assert state.config.training.gpus == ["GPU-1"] and state.recommendation.free_gb == pytest.approx(10.0)
    assert not cards[0].use.isChecked() and cards[1].use.isChecked()


def test_ticking_keeps_the_users_own_edits(panel):
    panel.state.set_snapshot(snapshot(gpu(0, total=24.0, used=1.0), gpu(1, total=24.0, used=1.0)))
    cards = {k[0]: c for k, c in panel.gpu_cards.items()}
    assert panel.state.config.training.gpus == [] and cards[0].use.isChecked()  # shown: the planned card
    cards[1].use.setChecked(True)
    assert panel.state.config.training.gpus == ["GPU-0", "GPU-1"]
    assert panel.state.config.training.epochs == RunConfig().training.epochs  # not replaced by the plan
    assert "training.gpus" not in panel.state.differences()


def test_a_configured_gpu_that_is_gone_is_said_and_planned_around(qtbot):
    config = RunConfig()
    config.training.gpus = ["GPU-gone"]
    state = AppState(config)
    widget = HardwarePanel(state)
    qtbot.addWidget(widget)
    state.set_snapshot(snapshot(gpu(0)))
    assert state.recommendation.gpu.uuid == "GPU-0"
    assert "not available" in state.recommendation.warnings[0]


def test_tier_table_marks_the_recommended_tier(panel):
    assert panel.tiers.selected_tier() is None
    panel.state.set_snapshot(snapshot(gpu(total=8.0, used=0.5)))
    assert panel.tiers.selected_tier() == panel.state.recommendation.tier.name == tier_for_vram(7.5).name
    panel.state.set_what_if(20.0)
    assert panel.tiers.selected_tier() == tier_for_vram(20.0).name


def test_configuration_page_shows_and_edits_the_gpus_to_use(qtbot):
    from medseg_gui.gui.config_editor import ConfigEditor

    config = RunConfig()
    config.training.gpus = ["GPU-0", "GPU-1"]
    state = AppState(config)
    editor = ConfigEditor(state)
    qtbot.addWidget(editor)
    line = editor.rows["training.gpus"].editor.line
    assert line.text() == "GPU-0, GPU-1"
    line.setText("0, 1 ,")
    line.textEdited.emit(line.text())
    assert state.config.training.gpus == ["0", "1"]
    line.setText("")
    line.textEdited.emit("")
    assert state.config.training.gpus == []


def test_no_driver_reason_is_shown_once(panel, qtbot):
    """The CPU card says why there is no GPU; the recommendation beside it must not repeat it."""
    from PySide6.QtWidgets import QLabel

    panel.state.set_snapshot(cpu_snapshot())
    card = panel.recommendation
    qtbot.waitUntil(lambda: "No GPU" in card.warnings.text(), timeout=30_000)

    def count() -> int:
        return sum(label.text().lower().count("no nvidia driver found") for label in panel.findChildren(QLabel))

    assert count() == 1
    assert "no nvidia driver found" in panel.cpu_card.reason.text().lower()
    # the recommendation itself (CLI) still says why
    assert any("no NVIDIA driver found" in w for w in recommend(cpu_snapshot(), base=RunConfig()).warnings)
    for label in panel.findChildren(QLabel):
        assert "`" not in label.text()


def test_speed_estimate_is_for_the_configured_card_not_the_most_free(qtbot):
    """The speed card's estimate speaks of training.gpus' card, as the session trains there."""
    from gui_fakes import gpu as fake_gpu

    from medseg_gui.gui.tools.speed_card import SpeedCard

    state = AppState(RunConfig())
    state.set_snapshot(snapshot(fake_gpu(0, name="Busy card", used=11.0), fake_gpu(1, name="Idle card", used=0.5)))
    seen = []

    def known(config, gpu_info, train, val):
        seen.append(None if gpu_info is None else gpu_info.name)

    card = SpeedCard(state, lambda *a, **k: None, known)
    qtbot.addWidget(card)
    config = cfg.RunConfig.from_dict(state.config.to_dict())
    config.training.accelerator, config.training.gpus, config.training.devices = "gpu", ["0"], 1
    state.set_config(config)
    qtbot.waitUntil(lambda: seen and seen[-1] == "Busy card", timeout=30_000)
    config = cfg.RunConfig.from_dict(state.config.to_dict())
    config.training.gpus = ["7"]  # a card that does not exist: no estimate (the checklist says why)
    state.set_config(config)
    qtbot.waitUntil(lambda: seen[-1] is None, timeout=30_000)
