"""Hardware page: GPU cards, CPU-mode card, recommendation card, what-if, and the poller thread."""

from __future__ import annotations

import html
import time

import pytest
from PySide6.QtCore import Qt, QTimer

from fake_nvml import FakeGpu, make_nvml
from gui_fakes import cpu_snapshot, gpu, snapshot
from medseg_gui.core import config as cfg
from medseg_gui.core.config import RunConfig
from medseg_gui.core.hardware import probe
from medseg_gui.core.recommend import recommend
from medseg_gui.core.tiers import tier_for_vram
from medseg_gui.gui.hardware_panel import HardwarePanel
from medseg_gui.gui.state import AppState
from medseg_gui.gui.workers import PollerThread


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
    assert card.use_gpu.isChecked() and not card.vram.isEnabled()
    # widget -> state
    card.use_gpu.setChecked(False)
    card.vram.setValue(4.0)
    assert panel.state.what_if_vram_gb == 4.0
    assert panel.state.recommendation.tier.name == tier_for_vram(4.0).name != gpu_tier
    assert card.tier.text() == tier_for_vram(4.0).label
    assert "what-if" in card.source.text()
    # state -> widget
    panel.state.set_what_if(10.0)
    assert card.vram.value() == 10.0 and not card.use_gpu.isChecked() and card.vram.isEnabled()
    assert card.tier.text() == tier_for_vram(10.0).label
    card.use_gpu.setChecked(True)
    assert panel.state.what_if_vram_gb is None
    assert panel.state.recommendation.tier.name == gpu_tier


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
    poller = PollerThread(lambda: probe(nvml=nvml), interval_ms=50)
    with qtbot.waitSignal(poller.snapshot_ready, timeout=5000) as blocker:
        poller.start()
    snap = blocker.args[0]
    assert snap.gpus[0].name == "Fake RTX"
    assert snap.gpus[0].used_gb == pytest.approx(3.0)
    with qtbot.waitSignal(poller.snapshot_ready, timeout=5000):
        pass  # it keeps polling
    assert poller.stop() and not poller.is_running()


def test_poller_reports_a_failing_probe(qtbot):
    def broken():
        raise RuntimeError("driver went away")
    poller = PollerThread(broken, interval_ms=50)
    with qtbot.waitSignal(poller.errored, timeout=5000) as blocker:
        poller.start()
    assert "driver went away" in blocker.args[0]
    assert poller.stop()


def test_slow_probe_does_not_block_the_gui_thread(qtbot):
    """A probe that stalls 400 ms (a throttling card) must not delay timers on the GUI thread."""
    def slow():
        time.sleep(0.4)
        return cpu_snapshot()
    poller = PollerThread(slow, interval_ms=10)
    poller.start()
    try:
        qtbot.wait(50)  # the worker is now inside a slow probe
        fired = []
        start = time.perf_counter()
        QTimer.singleShot(20, lambda: fired.append(time.perf_counter() - start))
        qtbot.waitUntil(lambda: bool(fired), timeout=2000)
        assert fired[0] < 0.2
    finally:
        assert poller.stop()


def test_tier_table_marks_the_recommended_tier(panel):
    assert panel.tiers.selected_tier() is None
    panel.state.set_snapshot(snapshot(gpu(total=8.0, used=0.5)))
    assert panel.tiers.selected_tier() == panel.state.recommendation.tier.name == tier_for_vram(7.5).name
    panel.state.set_what_if(20.0)
    assert panel.tiers.selected_tier() == tier_for_vram(20.0).name
