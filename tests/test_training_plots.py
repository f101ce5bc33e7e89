"""The Training page's plots read as a person expects: a learning rate of 3e-4 on a 3e-4 axis, whole
steps and epochs, nothing clipped at 1366 px, no legend boxes over curves or before data, and a CPU
run says it has no GPU memory to plot."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")

from medseg_gui.core import events as ev  # noqa: E402
from medseg_gui.core.live_metrics import LiveMetrics  # noqa: E402
from medseg_gui.gui.plots import IntegerAxis, SciLogAxis, sci, tight_log_range  # noqa: E402
from medseg_gui.gui.training.live_view import LiveView  # noqa: E402


def _ticks(axis, lo, hi, size=300):
    return [v for _, values in axis.tickValues(lo, hi, size) for v in values]


def test_axes_helpers(qapp):
    assert [sci(v) for v in (3e-4, 1e-3, 2.5e-5, 1.0)] == ["3e-4", "1e-3", "2.5e-5", "1"]
    ints = IntegerAxis("bottom")
    assert all(float(v).is_integer() for v in _ticks(ints, 0.6, 2.4)) and _ticks(ints, 0.6, 2.4)
    assert all(float(v).is_integer() for v in _ticks(ints, 0, 12000, 600))
    lo, hi = tight_log_range([3e-4] * 50)
    assert lo < math.log10(3e-4) < hi and hi - lo < 1.5  # tight: not "±400 (x0.001)"
    log_axis = SciLogAxis("left")
    labels = log_axis.tickStrings(_ticks(log_axis, lo, hi), 1, 1)
    assert "3e-4" in labels and all("e-" in t for t in labels)


def _cpu_run(model: LiveMetrics, epochs: int = 0) -> None:
    model.apply(ev.RunStarted(run_dir="r", config={"dataset": {"class_names": ["background", "liver"],
                                                               "class_colors": ["#000000", "#e6194b"]}},
                              device="cpu", epochs=3, steps_per_epoch=10, train_images=20, val_images=5, time=0.0))
    for s in range(1, 11):
        model.apply(ev.StepMetrics(step=s, epoch=1, loss=1.0 / s, lr=3e-4, epoch_progress=s / 10, time=float(s)))
    for e in range(1, epochs + 1):
        model.apply(ev.EpochMetrics(epoch=e, step=10 * e, train_loss=0.5, val_loss=0.4, val_f1=0.6,
                                    per_class_dice=[0.9, 0.6], time=10.0 * e))


def test_live_view_at_a_laptops_width(qtbot):
    view = LiveView()
    qtbot.addWidget(view)
    view.resize(1366 - 200 - 240 - 60, 560)  # the Training page beside the sidebar and the runs list
    view.show()
    model = LiveMetrics()
    _cpu_run(model)
    view.render(model, force=True)
    qtbot.wait(20)
    assert view.dice_key.text() == ""  # no key (legend) before the first epoch
    assert view.vram_stack.currentWidget() is view.no_gpu_label and view.no_gpu_label.isVisible()
    assert "No GPU" in view.no_gpu_label.text()
    low, high = view.lr_plot.getPlotItem().getViewBox().viewRange()[1]
    assert low < math.log10(3e-4) < high and high - low < 1.5
    for plot in (view.loss_plot, view.val_plot, view.f1_plot, view.dice_plot, view.lr_plot):
        item_width = plot.getPlotItem().sceneBoundingRect().width()
        assert item_width <= plot.viewport().width() + 1, "a title pinned the plot wider than its cell"
    _cpu_run(model, epochs=2)
    view.render(model, force=True)
    assert "liver" in view.dice_key.text()
    for plot in (view.val_plot, view.dice_plot):
        assert plot.getPlotItem().legend is None  # curves are named in titles/keys, never under a box
