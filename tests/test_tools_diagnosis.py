"""Slowdown diagnosis: the pure verdicts from made-up measurements, and a real tiny run with a slow loader."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from engine_helpers import synthetic_arrays, tiny_config
from medseg_gui.core.engine import diagnosis as dg
from medseg_gui.core.engine.diagnosis import DiagContext, DiagSample, StepTimer, diagnose
from medseg_gui.core.events import LogMessage


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def _gpu(wait=0.1, compute=1.0, **kw) -> DiagSample:
    return DiagSample(steps=10, data_wait_s=wait, compute_s=compute, device="gpu", gpu_util_pct=kw.pop("util", 97.0),
                      **kw)


def test_data_loading_when_the_gpu_waits_for_batches():
    d = diagnose([_gpu(wait=3.0, compute=1.0, util=25.0)], DiagContext(num_workers=0, cpu_count=8, os_name="Linux"))
    assert d.bottleneck == "data loading"
    assert "75% of step time waiting for data" in d.evidence[0]
    assert any("num_workers from 0 to" in a for a in d.advice)
    assert any("SSD" in a for a in d.advice)
    assert d.is_problem and "bottleneck = data loading" in d.text()


def test_data_loading_advice_on_windows_does_not_ask_for_workers():
    d = diagnose([_gpu(wait=3.0, compute=1.0, util=60.0)], DiagContext(num_workers=0, cpu_count=8, os_name="Windows"))
    assert d.bottleneck == "data loading"
    assert not any("num_workers from" in a for a in d.advice)
    assert any("cache_images" in a for a in d.advice)


def test_a_saturated_gpu_is_the_limit_even_when_the_host_waits_for_batches():
    """Graph replays return at once, so the host idles in the loader while the GPU is 100% busy."""
    d = diagnose([_gpu(wait=0.4, compute=0.6, util=99.0)])
    assert d.bottleneck == "gpu compute" and not d.is_problem
    assert any("host waits while the GPU works" in e for e in d.evidence)


def test_thermal_throttling_named_with_temperature_and_clock():
    samples = [_gpu(throttle_reasons=["hardware thermal slowdown"], temperature_c=91.0, sm_clock_mhz=1100,
                    max_sm_clock_mhz=1980) for _ in range(3)]
    d = diagnose(samples)
    assert d.bottleneck == "thermal throttling"
    assert any("91 °C" in e for e in d.evidence) and any("1100 of 1980 MHz" in e for e in d.evidence)
    assert any("cooling" in a.lower() for a in d.advice)


def test_power_cap_alone_is_not_a_problem():
    d = diagnose([_gpu(throttle_reasons=["software power cap"])])
    assert d.bottleneck == "gpu compute" and not d.is_problem


def test_other_programs_named_but_display_server_ignored():
    samples = [_gpu(other_processes=[("Xorg", 0.6), ("python", 3.2), ("chrome", 0.1)])]
    d = diagnose(samples)
    assert d.bottleneck == "other programs"
    assert "python (3.2 GB)" in d.evidence[-1] and "Xorg" not in d.evidence[-1] and "chrome" not in d.evidence[-1]
    assert "python" in d.advice[0]
    only_desktop = diagnose([_gpu(other_processes=[("Xorg", 0.6)])])
    assert only_desktop.bottleneck == "gpu compute"


def test_compute_bound_gpu_and_cpu_runs():
    assert diagnose([_gpu()]).bottleneck == "gpu compute"
    low = diagnose([_gpu(util=40.0)])
    assert low.bottleneck == "gpu compute" and any("launch-bound" in e for e in low.evidence)
    cpu = diagnose([DiagSample(steps=5, data_wait_s=0.01, compute_s=2.0, device="cpu")])
    assert cpu.bottleneck == "cpu compute"
    assert diagnose([]).bottleneck == "unknown"


def test_step_timer_splits_wait_and_compute_and_skips_the_first_batch(monkeypatch):
    clock = [100.0]  # a fake clock: sleeps on a busy machine overshoot, so the split is checked exactly
    monkeypatch.setattr(dg, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    timer = StepTimer()
    timer.epoch_start()
    for _ in range(3):
        clock[0] += 0.03  # "waiting for data"
        timer.batch_start()
        clock[0] += 0.01  # "compute"
        timer.batch_end()
    steps, wait, compute = timer.take()
    assert steps == 2  # the first batch of the epoch is left out
    assert wait == pytest.approx(0.06) and compute == pytest.approx(0.02)
    assert timer.take() == (0, 0.0, 0.0)


class _SlowDataModule:
    """A real LightningDataModule whose dataset sleeps in __getitem__ (an artificially slow loader)."""

    def __init__(self, delay_s: float, n_train: int = 24, n_val: int = 4, size: int = 64):
        self.delay_s, self.n_train, self.n_val, self.size = delay_s, n_train, n_val, size

    def __call__(self, config):
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, Dataset

        images, masks = synthetic_arrays(self.n_train + self.n_val, self.size, seed=3)
        delay, n_train, batch = self.delay_s, self.n_train, config.training.batch_size

        class Slow(Dataset):
            def __init__(self, lo, hi):
                self.lo, self.hi = lo, hi

            def __len__(self):
                return self.hi - self.lo

            def __getitem__(self, i):
                time.sleep(delay)
                return torch.from_numpy(images[self.lo + i]), torch.from_numpy(masks[self.lo + i])

        class DM(L.LightningDataModule):
            def setup(self, stage=None):
                self.train_dataset, self.val_dataset = Slow(0, n_train), Slow(n_train, len(images))

            def train_dataloader(self):
                return DataLoader(self.train_dataset, batch_size=batch, shuffle=True, drop_last=True)

            def val_dataloader(self):
                return DataLoader(self.val_dataset, batch_size=batch)

        return DM()


@pytest.mark.slow
def test_real_run_with_a_slow_loader_is_diagnosed_as_data_loading(tmp_path, monkeypatch):
    """A real TrainingSession (the session's own hook adds the callback) on a dataset that sleeps."""
    from medseg_gui.core.engine.session import TrainingSession

    monkeypatch.setattr(dg, "WINDOW_STEPS", 3)
    monkeypatch.setattr(dg, "WINDOW_MIN_S", 0.0)
    monkeypatch.setattr(dg, "WARMUP_STEPS", 1)
    config = tiny_config(tmp_path, epochs=1, batch_size=2)
    events = []
    # 2 images x 0.15 s per batch against a few ms of tiny-model compute
    result = TrainingSession(config, events.append, datamodule_factory=_SlowDataModule(0.15, n_train=16)).run()
    assert type(result).__name__ == "RunFinished", result
    lines = [e.message for e in events if isinstance(e, LogMessage) and e.message.startswith(dg.LOG_PREFIX)]
    assert lines, [getattr(e, "message", e) for e in events]
    assert "bottleneck = data loading" in lines[0]
    assert "waiting for data" in lines[0] and "What to do" in lines[0]


@pytest.mark.slow
def test_fast_loader_is_not_blamed(tmp_path):
    """The same tiny run with in-memory data: the verdict must not be data loading."""
    import lightning as L

    from engine_helpers import FakeDataModule
    from medseg_gui.core.engine.lit_module import OptimSettings, SegModule
    from medseg_gui.core.engine.model import build_model

    config = tiny_config(tmp_path, epochs=1, batch_size=4)
    events = []
    callback = dg.diagnosis_callback(events.append, "cpu", config, every_n_steps=2, min_window_s=0.0,
                                     warmup_steps=1)
    module = SegModule(build_model(config), 3, OptimSettings(lr=1e-3))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[callback], default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=FakeDataModule(n_train=32)(config))
    assert callback.diagnoses
    assert callback.diagnoses[-1].bottleneck == "cpu compute"
    assert events and isinstance(events[0], LogMessage) and "cpu compute" in events[0].message


def test_cpu_advice_never_suggests_what_the_run_already_uses():
    sample = DiagSample(steps=5, data_wait_s=0.01, compute_s=2.0, device="cpu")
    small = diagnose([sample], DiagContext(variant="b0", image_size=128)).advice[0]
    assert "224" not in small and "already the smallest model (SegFormer-b0 · 128 px)" in small
    big = diagnose([sample], DiagContext(variant="b4", image_size=288)).advice[0]
    assert "SegFormer-b0 at 224 px" in big
    b2_small = diagnose([sample], DiagContext(variant="b2", image_size=160)).advice[0]
    assert "SegFormer-b0 at 160 px" in b2_small
