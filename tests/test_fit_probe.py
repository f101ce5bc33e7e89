import pytest

from medseg_gui.core.tools import fit_probe
from medseg_gui.core.config import RunConfig
from medseg_gui.core.hardware import GpuInfo
from medseg_gui.core.planning.recommend import recommend
from medseg_gui.core.hardware import cpu_only_snapshot

GPU = GpuInfo(index=0, name="Fake GPU 12GB", total_gb=12, free_gb=11.5, used_gb=0.5)


def fake_runner(max_fit, calls):
    def run(batch):
        calls.append(batch)
        return {"batch": batch, "fits": batch <= max_fit, "reserved_gb": 0.1 * batch if batch <= max_fit else None}
    return run


@pytest.mark.parametrize("max_fit, start", [(13, 8), (3, 20), (1, 4), (256, 64), (40, 1)])
def test_binary_search_finds_the_largest_batch(max_fit, start):
    calls = []
    result = fit_probe.probe_fit(RunConfig(), GPU, start=start, max_trials=12, run_one=fake_runner(max_fit, calls))
    assert result.largest_batch == max_fit
    assert len(calls) == len(set(calls)) <= 12
    assert all(t.fits == (t.batch_size <= max_fit) for t in result.trials)


def test_nothing_fits_says_what_to_do():
    result = fit_probe.probe_fit(RunConfig(), GPU, start=4, run_one=fake_runner(0, []))
    assert result.largest_batch == 0 and "smaller model or image size" in result.message


def test_result_is_cached_per_gpu_and_settings():
    calls = []
    first = fit_probe.probe_fit(RunConfig(), GPU, driver="550", start=8, run_one=fake_runner(13, calls))
    n = len(calls)
    again = fit_probe.probe_fit(RunConfig(), GPU, driver="550", start=8, run_one=fake_runner(13, calls))
    assert again.cached and again.largest_batch == first.largest_batch and len(calls) == n
    other = RunConfig()
    other.dataset.image_size = 384
    fit_probe.probe_fit(other, GPU, driver="550", start=8, run_one=fake_runner(5, calls))
    assert len(calls) > n


def test_a_failing_child_is_reported_not_raised():
    result = fit_probe.probe_fit(RunConfig(), GPU, start=4,
                                 run_one=lambda b: {"batch": b, "fits": False, "error": True, "detail": "boom"})
    assert result.largest_batch == 0 and "probe failed: boom" in result.message


def test_without_a_gpu_nothing_runs():
    result = fit_probe.probe_fit(RunConfig(), None)
    assert result.largest_batch == 0 and "needs one" in result.message


def test_apply_probe_lowers_the_batch_and_keeps_the_effective_batch():
    rec = recommend(cpu_only_snapshot(), vram_gb=12)
    tr = rec.config.training
    tr.batch_size, tr.accumulate_grad_batches = 16, 1
    fit_probe.apply_probe(rec, fit_probe.FitProbeResult(6, [fit_probe.Trial(6, True, 9.5)], message="batch 6 fits"))
    assert tr.batch_size == 6 and tr.accumulate_grad_batches == 3
    assert any("only batch 6 fits" in w for w in rec.warnings)
    assert any("measured peak 9.5 GB" in r for r in rec.reasons)


@pytest.mark.slow
def test_child_process_runs_real_steps_on_the_cpu():
    config = RunConfig()
    config.training.variant = "b0"
    config.training.precision = "32"
    config.dataset.image_size = 64
    r = fit_probe.run_child(config, 2, steps=1, device="cpu", timeout_s=240)
    assert r["fits"] is True and r["batch"] == 2
