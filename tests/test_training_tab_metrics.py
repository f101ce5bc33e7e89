"""Core run-state model of the Training tab (no Qt): decimation, EMA smoothing, replay from events.jsonl."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg_gui.core import events as ev
from medseg_gui.core.live_metrics import DecimatedSeries, Ema, LiveMetrics, replay, replay_run
from medseg_gui.core.words import format_duration


def test_series_keeps_recent_points_exactly_and_bounds_memory():
    s = DecimatedSeries(recent=256, chunk=16, max_buckets=64)
    n = 100_000
    for i in range(n):
        s.append(i, math.sin(i / 50.0))
    x, y = s.arrays()
    assert len(x) == len(y) <= 256 + 2 * 64
    assert np.all(np.diff(x) >= 0), "x must stay in order for plotting"
    # the last 'recent' points are exact
    assert np.array_equal(x[-256:], np.arange(n - 256, n))
    assert np.allclose(y[-256:], np.sin(np.arange(n - 256, n) / 50.0))
    assert x[0] < 0.2 * n, "the decimated history still reaches back to the start"


def test_series_min_max_history_keeps_spikes():
    s = DecimatedSeries(recent=64, chunk=8, max_buckets=16)
    values = np.ones(20_000)
    values[1234] = 50.0  # a loss spike long ago
    values[7777] = -3.0
    for i, v in enumerate(values):
        s.append(i, v)
    x, y = s.arrays()
    assert y.max() == 50.0 and y.min() == -3.0
    assert x[np.argmax(y)] == 1234 and x[np.argmin(y)] == 7777


def test_series_nan_and_truncate():
    s = DecimatedSeries(recent=32, chunk=8, max_buckets=64)
    for i in range(100):
        s.append(i, math.nan if 40 <= i < 56 else float(i))
    x, y = s.arrays()
    assert np.isnan(y).any() and np.nanmax(y) == 99
    s.truncate_after(80)
    x, y = s.arrays()
    assert x.max() == 80
    assert s.last == (80.0, 80.0)
    s.append(81, 1.0)
    assert s.arrays()[0][-1] == 81


def test_ema_is_bias_corrected_and_skips_nan():
    e = Ema(0.9)
    assert math.isnan(e.value)
    assert e.update(2.0) == pytest.approx(2.0)  # no pull towards 0 at the start
    e.update(float("nan"))
    assert e.value == pytest.approx(2.0)
    for _ in range(200):
        e.update(1.0)
    assert e.value == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        Ema(1.0)


def _events(run_dir="r", steps=10, epochs=2, resumed=0, start_step=0):
    out = [ev.RunStarted(run_dir=run_dir, config={"dataset": {"class_names": ["bg", "a", "b"],
                                                               "class_colors": ["#000000", "#ff0000", "#00ff00"]}},
                         device="cpu", epochs=epochs, steps_per_epoch=steps // epochs, train_images=8,
                         val_images=2, resumed_from_step=resumed, predicted_peak_gb=1.5, vram_total_gb=8.0,
                         time=100.0)]
    per = steps // epochs
    for s in range(start_step + 1, steps + 1):
        e = (s - 1) // per + 1
        out.append(ev.StepMetrics(step=s, epoch=e, loss=1.0 / s, lr=1e-3, images_per_s=10.0, eta_s=5.0,
                                  epoch_progress=((s - 1) % per + 1) / per, time=100.0 + s))
        out.append(ev.VramSample(step=s, allocated_gb=0.5, reserved_gb=0.7, device_used_gb=None,
                                 device_total_gb=None, time=100.0 + s))
        if s % per == 0:
            out.append(ev.EpochMetrics(epoch=e, step=s, train_loss=1.0 / s, val_loss=0.5 / e, val_f1=0.3 * e,
                                       per_class_dice=[0.9, 0.2 * e, 0.1 * e], time=100.0 + s))
            out.append(ev.Checkpointed(path=f"{run_dir}/checkpoints/last.ckpt", epoch=e, step=s, time=100.0 + s))
    return out


def test_live_metrics_accumulates_events():
    m = LiveMetrics()
    m.apply_many(_events())
    assert m.status == "running" and m.class_names == ["bg", "a", "b"]
    x, y = m.loss.arrays()
    assert list(x) == list(range(1, 11)) and y[0] == 1.0
    sx, sy = m.loss_smooth.arrays()
    assert sy[0] == pytest.approx(1.0) and sy[-1] > y[-1]  # smoothed lags a falling loss
    assert m.epochs.epoch == [1, 2] and m.epochs.val_f1 == pytest.approx([0.3, 0.6])
    assert m.epochs.dice_matrix(3).shape == (2, 3)
    vx, vy = m.vram_used.arrays()
    assert vx[0] == 1.0 and vy[0] == 0.7 and m.vram_label == "reserved by training"
    assert m.predicted_peak_gb == 1.5 and m.vram_total_gb == 8.0
    assert m.best_f1 == pytest.approx(0.6)
    assert {"steps", "epochs", "vram", "progress", "log", "run"} <= m.take_dirty()
    assert m.take_dirty() == set()
    m.apply(ev.RunFinished(run_dir="r", stopped_early=True, best_f1=0.6, bundle_dir="r/bundle", epochs_done=2,
                           steps_done=10))
    assert m.status == "stopped" and m.bundle_dir == "r/bundle" and m.is_terminal


def test_resume_replaces_redone_steps_and_epochs():
    first = _events(steps=10, epochs=2)[:-6]  # crash somewhere in epoch 2
    m = replay(first)
    last_step = int(m.loss.last[0])
    assert last_step > 5
    resumed = _events(steps=10, epochs=2, resumed=5, start_step=5)
    m.apply_many(resumed)
    x, _ = m.loss.arrays()
    assert list(x) == list(range(1, 11)), "steps 6.. are redone once, not drawn twice"
    assert m.epochs.epoch == [1, 2]


def test_failure_and_oom_reach_the_log():
    m = LiveMetrics()
    m.apply_many(_events(steps=4, epochs=1))
    m.apply(ev.OomRecovered(step=2, old_batch_size=8, new_batch_size=4, accumulate_grad_batches=2, message="oom!"))
    assert m.loss.last[0] == 2
    m.apply(ev.RunFailed(run_dir="r", reason="dataset problem", hint="run the check", kind="data"))
    levels = [e.level for e in m.log]
    assert "warning" in levels and levels[-1] == "error"
    assert m.status == "failed" and m.failure.kind == "data"


def test_replay_run_from_jsonl(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "events.jsonl", "w", encoding="utf-8") as fh:
        writer = ev.JsonlWriter(fh)
        for e in _events(run_dir=str(run)):
            writer(e)
        fh.write('{"type": "StepMetrics", "step": 9')  # truncated last line (crash mid-write)
    m = replay_run(run)
    assert m.status == "incomplete"  # no terminal event
    assert len(m.loss.arrays()[0]) == 10 and m.epochs.epoch == [1, 2]
    with pytest.raises(FileNotFoundError, match="events.jsonl"):
        replay_run(tmp_path)


def test_long_run_stays_bounded_and_fast():
    import time

    m = LiveMetrics(recent_points=2048, max_buckets=1024)
    t = time.process_time()  # CPU time: other work on a shared machine does not inflate it
    for s in range(1, 120_001):
        m.apply(ev.StepMetrics(step=s, epoch=1 + s // 1000, loss=1.0 / math.sqrt(s), lr=1e-4, time=float(s)))
    elapsed = time.process_time() - t
    x, y = m.loss.arrays()
    assert len(x) <= 2048 + 2 * 1024
    assert x[-1] == 120_000 and y.max() == 1.0
    assert elapsed < 20, f"{elapsed:.1f} s to take 120 000 step events"


def test_format_duration():
    assert format_duration(None) == "—"
    assert format_duration(12.4) == "12 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(3720) == "1 h 02 min"
    assert format_duration(3 * 86400 + 5 * 3600 + 59) == "3 days 5 h"  # long estimates in days
    assert format_duration(float("inf")) == format_duration(-1) == "—"
