import json
import subprocess
import sys
import time

from fake_nvml import OWN_PID, FakeGpu, RaisingNvml, make_nvml

from medseg_gui.core import gpu_identity, hardware
def test_reads_every_field_from_nvml():
    nvml = make_nvml([FakeGpu(processes=[(OWN_PID, 1.0), (4242, 2.0)], throttle=0x40)])
    snap = hardware.probe(nvml, with_processes=True)
    assert snap.nvml_error is None and snap.driver_version == "550.54" and snap.cuda_driver_version == "12.4"
    (g,) = snap.gpus
    assert g.name == "NVIDIA GeForce RTX 3060"
    assert abs(g.total_gb - 12) < 1e-6 and abs(g.used_gb - 0.5) < 1e-6 and abs(g.free_gb - 11.5) < 1e-6
    assert (g.utilization_pct, g.temperature_c, g.power_w, g.power_limit_w) == (37, 61, 95, 170)
    assert g.compute_capability == (8, 6) and g.supports_bf16
    assert g.used_by_this_process_gb == 1.0
    assert [p.pid for p in g.processes] == [4242]
    assert g.throttle_reasons == ["hardware thermal slowdown"]
    assert g.memory_bandwidth_gbs == 192 / 8 * 7501 * 2 / 1000


def test_not_supported_queries_become_none():
    gpu = FakeGpu(unsupported={"nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage",
                               "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo",
                               "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetMigMode"})
    (g,) = hardware.probe(make_nvml([gpu])).gpus
    assert g.temperature_c is None and g.power_w is None and g.utilization_pct is None
    assert g.free_gb is None and g.compute_capability is None and not g.supports_bf16
    assert g.name == "NVIDIA GeForce RTX 3060"


def test_init_failure_gives_cpu_snapshot_with_reason():
    snap = hardware.probe(RaisingNvml())
    assert snap.gpus == [] and not snap.has_gpu
    assert "no NVIDIA driver" in snap.nvml_error
    assert snap.cpu_count >= 1 and snap.ram_total_gb > 0


def test_every_call_raising_after_init_still_returns():
    snap = hardware.probe(RaisingNvml(init_ok=True))
    assert snap.gpus == []
    assert snap.driver_version is None


def test_snapshot_is_json_serialisable_with_derived_fields():
    data = hardware.probe(make_nvml([FakeGpu(), FakeGpu(name="Tesla T4", cc=(7, 5))])).to_dict()
    text = json.dumps(data)
    assert json.loads(text)["gpus"][1]["supports_bf16"] is False
    assert data["gpus"][0]["compute_capability"] == "8.6" and data["has_gpu"]


def test_select_gpu_prefers_most_free_and_rejects_bad_index():
    snap = hardware.probe(make_nvml([FakeGpu(used_gb=10), FakeGpu(used_gb=1)]))
    assert gpu_identity.select_gpu(snap).index == 1
    assert gpu_identity.select_gpu(snap, 0).index == 0
    try:
        gpu_identity.select_gpu(snap, 5)
    except ValueError as exc:
        assert "no GPU 5" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_real_probe_never_raises_and_is_cheap_and_creates_no_cuda_context():
    code = ("import time,sys; from medseg_gui.core.hardware import probe; probe();"
            "t=time.process_time(); [probe() for _ in range(20)]; dt=(time.process_time()-t)/20;"
            "print(dt*1000); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    per_call_ms, torch_loaded = float(out[0]), out[1]
    assert torch_loaded == "False"
    assert per_call_ms < 100  # generous: polled once a second from a worker thread


def test_probe_timing_reported(capsys):
    start = time.process_time()  # CPU time: a busy machine does not inflate it
    hardware.probe()
    assert time.process_time() - start < 1.0
