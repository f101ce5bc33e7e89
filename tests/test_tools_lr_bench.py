"""LR finder and benchmark on the CPU with a tiny SegFormer: curves, suggestions, time estimates, cache."""

from __future__ import annotations

import math
import threading

import pytest

from engine_helpers import FakeDataModule, tiny_config
from medseg_gui.core.tools import benchmark as bm
from medseg_gui.core.config import ConfigError
from medseg_gui.core.hardware import GpuInfo
from medseg_gui.core.tools.lr_find import apply_lr, find_lr
from medseg_gui.core.tools.trial_run import ToolCancelled, ToolError


@pytest.mark.slow
def test_lr_find_returns_a_curve_and_a_suggestion_without_touching_the_run(tmp_path):
    config = tiny_config(tmp_path, max_steps_per_epoch=2)
    before = config.to_dict()
    seen = []
    result = find_lr(config, num_training=30, datamodule_factory=FakeDataModule(n_train=24),
                     progress=lambda done, total: seen.append((done, total)))
    assert len(result.lrs) == len(result.losses) == result.batches >= 13
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))  # exponential sweep upwards
    assert result.lrs[0] == pytest.approx(1e-7)
    assert result.suggestion is not None and result.lrs[0] <= result.suggestion <= result.lrs[-1]
    assert "suggested learning rate" in result.message
    assert seen and seen[-1][1] == 30
    assert config.to_dict() == before  # the real config (batch limits, lr) is untouched
    assert not (tmp_path / "runs").exists()  # nothing written where runs go
    assert math.isfinite(result.to_dict()["losses"][0])


@pytest.mark.slow
def test_lr_find_with_too_few_batches_says_so(tmp_path):
    config = tiny_config(tmp_path)
    # one epoch of a 16-image set at batch 4 = 4 batches: far fewer than the suggestion needs
    result = find_lr(config, num_training=30, max_epochs=1, datamodule_factory=FakeDataModule(n_train=16))
    assert result.suggestion is None
    assert result.batches == 4
    assert result.message.startswith("only 4 batches: use a larger dataset or more steps")


@pytest.mark.slow
def test_lr_find_can_be_cancelled(tmp_path):
    stop = threading.Event()

    def progress(done, total):
        if done >= 2:
            stop.set()

    with pytest.raises(ToolCancelled):
        find_lr(tiny_config(tmp_path), num_training=30, datamodule_factory=FakeDataModule(n_train=24),
                progress=progress, stop_event=stop)


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_apply_lr_sets_the_config_copy_and_checks_the_range(tmp_path):
    config = tiny_config(tmp_path)
    updated = apply_lr(config, 2.5e-4)
    assert updated.training.lr == 2.5e-4 and config.training.lr == 3e-3
    with pytest.raises(ConfigError, match="training.lr"):
        apply_lr(config, 5.0)


def test_a_bad_config_is_refused_with_the_field_named(tmp_path):
    config = tiny_config(tmp_path, batch_size=0)
    with pytest.raises(ToolError, match="training.batch_size"):
        bm.run_benchmark(config, datamodule_factory=FakeDataModule())


@pytest.mark.slow
def test_benchmark_measures_and_estimates_the_run_time(tmp_path):
    config = tiny_config(tmp_path, epochs=10)
    result = bm.run_benchmark(config, steps=4, warmup=2, val_batches=2, datamodule_factory=FakeDataModule(n_train=24))
    assert result.kind == "measured" and result.device == "cpu"
    assert result.images_per_s > 0 and result.ms_per_step > 0
    assert result.images_per_s == pytest.approx(4 * 1000 / result.ms_per_step, rel=1e-6)
    assert result.peak_vram_gb is None  # CPU run
    assert result.val_images_per_s and result.val_images_per_s > 0
    est = result.time
    assert (est.train_images, est.val_images, est.steps_per_epoch, est.epochs) == (24, 8, 6, 10)
    assert est.train_s_per_epoch == pytest.approx(6 * result.ms_per_step / 1000)
    assert est.val_s_per_epoch == pytest.approx(8 / result.val_images_per_s)
    assert est.run_s == pytest.approx(10 * est.epoch_s)
    assert "per epoch" in result.summary() and result.summary().startswith("measured:")
    # cached for this device + config, found again by the GUI's lookup, and not for another batch
    cached = bm.load_cached(config, "cpu")
    assert cached is not None and cached.images_per_s == pytest.approx(result.images_per_s)
    assert bm.known_speed(config, None, 1000, 100).kind == "measured"
    other = config.copy()
    other.training.batch_size = 2
    assert bm.load_cached(other, "cpu") is None


def test_time_estimate_for_a_given_dataset_size(tmp_path):
    config = tiny_config(tmp_path, epochs=50, batch_size=8)
    result = bm.BenchmarkResult(kind="measured", device="cpu", variant="b0", batch_size=8, image_size=64,
                                precision="32", images_per_s=80.0, ms_per_step=100.0, val_images_per_s=400.0)
    est = bm.estimate_time(result, config, train_images=1000, val_images=200)
    assert est.steps_per_epoch == 125 and est.train_s_per_epoch == pytest.approx(12.5)
    assert est.val_s_per_epoch == pytest.approx(0.5)
    assert est.run_s == pytest.approx(50 * 13.0)
    config.training.max_steps_per_epoch = 10  # the quick-check cap is honoured
    assert bm.estimate_time(result, config, 1000, 200).steps_per_epoch == 10
    assert bm.steps_per_epoch(5, 8) == 1  # a set smaller than a batch keeps its one short batch
    assert est.text().startswith("13 s per epoch") and "10 min 50 s for 50 epochs" in est.text()


def test_bandwidth_estimate_is_labelled_and_scales_with_the_card(tmp_path):
    config = tiny_config(tmp_path, batch_size=32)
    config.training.variant = "b4"
    config.dataset.image_size = 288
    ref = {"gpu": "Reference GPU", "bandwidth_gbs": 4000.0, "measurements": [
        {"variant": "b4", "batch_size": 8, "image_size": 288, "compiled": False, "images_per_s": 40},
        {"variant": "b4", "batch_size": 32, "image_size": 288, "compiled": False, "images_per_s": 120}]}
    slow = GpuInfo(index=0, name="Slow card", memory_bus_width_bits=128, max_memory_clock_mhz=5000)  # 160 GB/s
    fast = GpuInfo(index=0, name="Fast card", memory_bus_width_bits=5120, max_memory_clock_mhz=2619)
    est = bm.estimate_from_bandwidth(slow, config, train_images=320, val_images=64, reference=ref)
    assert est.kind == "estimate" and est.summary().startswith("estimate:")
    assert est.images_per_s == pytest.approx(120 * 160 / 4000)  # memory-bound: scaled by bandwidth
    assert "memory-bound" in est.basis and "Reference GPU" in est.basis and "Run the benchmark" in est.basis
    assert est.time.steps_per_epoch == 10
    # a faster card at a small batch is held by the per-step (launch) limit, not the bandwidth
    config.training.batch_size = 4
    quick = bm.estimate_from_bandwidth(fast, config, reference=ref)
    assert quick.images_per_s == pytest.approx(40 * 4 / 8) and "launch-bound" in quick.basis
    assert bm.estimate_from_bandwidth(None, config) is None
    assert bm.estimate_from_bandwidth(GpuInfo(index=0, name="no clocks"), config) is None


def test_shipped_calibration_is_labelled_h200_reference():
    from medseg_gui.core.planning.throughput import calibration

    refs = {r["gpu"]: r for r in calibration()["references"]}
    h200 = refs["NVIDIA H200"]
    assert "reference measurements on H200" in h200["source"]
    assert {"b0", "b2", "b4", "b5"} <= {m["variant"] for m in h200["measurements"]}
    assert any(m["compiled"] for m in h200["measurements"])
    h100 = refs["NVIDIA H100 80GB HBM3"]  # measured with this engine (eager) by run_benchmark
    assert "run_benchmark" in h100["source"] and not any(m["compiled"] for m in h100["measurements"])
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 3060", memory_bus_width_bits=192, max_memory_clock_mhz=7501)
    from medseg_gui.core.config import RunConfig

    est = bm.estimate_from_bandwidth(gpu, RunConfig(), train_images=1000, val_images=200)
    assert est is not None and est.images_per_s > 0 and est.time.run_s > 0
    assert "H100" in est.basis  # eager config: the engine's own eager measurements come first
    compiled = RunConfig()
    compiled.training.compile = "on"
    assert "H200" in bm.estimate_from_bandwidth(gpu, compiled).basis
