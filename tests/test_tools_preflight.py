"""Pre-flight checklist: every item from injected facts — a healthy baseline passes, each fault turns its
item amber/red with the fix shown; plus the real fact gathering on this (CPU-only) machine."""

from __future__ import annotations

import pytest

from medseg_gui.core.tools import preflight as pf
from medseg_gui.core.config import RunConfig
from medseg_gui.core.hardware import GpuInfo, GpuProcess, HardwareSnapshot
from medseg_gui.core.tools.preflight import PreflightFacts, run_checks


def _gpu(**kw) -> GpuInfo:
    values = dict(index=0, name="NVIDIA GeForce RTX 4070", uuid="GPU-1", total_gb=12.0, used_gb=1.0, free_gb=11.0,
                  compute_capability=(8, 9))
    values.update(kw)
    return GpuInfo(**values)


def healthy(**kw) -> PreflightFacts:
    """A GPU machine where everything is right (batch 8 of b4 at 288 px predicted at 5 GB)."""
    config = RunConfig()
    config.training.accelerator = "auto"
    config.training.num_workers = 4
    gpu = kw.pop("gpu", _gpu())
    values = dict(config=config, os_name="Linux", cpu_count=8, torch_version="2.13.0+cu128", torch_cuda_build="12.8",
                  torch_cuda_available=True, gpus=[gpu], gpu=gpu, cuda_driver_version="12.8",
                  predicted_peak_gb=5.0, batch_fitting_free=16, batch_fitting_card=16, dataset_path="/data/ds",
                  dataset_exists=True, dataset_can_train=True, dataset_verdict="ready",
                  dataset_pairs={"train": 100, "valid": 20}, pin_memory=True)
    values.update(kw)
    return PreflightFacts(**values)


def item(facts: PreflightFacts, item_id: str) -> pf.CheckItem:
    return run_checks(facts).by_id(item_id)


def test_healthy_machine_is_all_green():
    report = run_checks(healthy())
    assert [i.status for i in report.items] == ["ok"] * len(pf.CHECKS), report.text()
    assert report.ok and report.worst == "ok" and "Ready to train" in report.text()


def test_invalid_setting_fails_naming_the_field():
    facts = healthy()
    facts.config.training.batch_size = 0
    it = item(facts, "config")
    assert it.status == "fail" and "training.batch_size" in it.detail and it.fix


def test_cpu_wheel_with_an_nvidia_gpu_fails_with_the_pip_command():
    it = item(healthy(torch_version="2.13.0+cpu", torch_cuda_build=None, torch_cuda_available=False), "torch_gpu")
    assert it.status == "fail" and "CPU-only build" in it.detail and "RTX 4070" in it.detail
    assert it.fix == "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu128"


def test_cuda_build_that_cannot_reach_the_gpu_names_the_driver():
    it = item(healthy(torch_cuda_build="13.0", torch_cuda_available=False, cuda_driver_version="12.6"), "torch_gpu")
    assert it.status == "fail" and "CUDA up to 12.6" in it.detail
    assert "update the NVIDIA driver" in it.fix and "whl/cu126" in it.fix


def test_gpu_accelerator_without_a_gpu_fails_and_cpu_fallback_warns():
    facts = healthy(gpus=[], gpu=None, torch_cuda_available=False, nvml_error="no NVIDIA driver found")
    facts.config.training.accelerator = "gpu"
    it = item(facts, "torch_gpu")
    assert it.status == "fail" and "no NVIDIA driver found" in it.detail and "accelerator = 'auto'" in it.fix
    facts.config.training.accelerator = "auto"
    assert item(facts, "torch_gpu").status == "warn"
    assert pf.cuda_wheel_tag("11.4") is None and pf.cuda_wheel_tag("13.1") == "cu130"


def test_headroom_below_one_gb_warns_and_over_the_free_memory_fails():
    tight = item(healthy(gpu=_gpu(free_gb=5.5), batch_fitting_free=6), "vram_headroom")
    assert tight.status == "warn" and "+0.5 GB" in tight.detail and "training.batch_size = 6" in tight.fix
    over = item(healthy(gpu=_gpu(free_gb=4.0), batch_fitting_free=4), "vram_headroom")
    assert over.status == "fail" and "run out of memory" in over.detail and "training.batch_size = 4" in over.fix


def test_unknown_prediction_says_predicted_peak_unknown():
    facts = healthy(predicted_peak_gb=None, peak_note="no memory model available (ImportError)")
    for item_id in ("vram_headroom", "fits_card"):
        it = item(facts, item_id)
        assert it.status == "warn" and pf.PEAK_UNKNOWN in it.detail and it.fix


def test_batch_too_big_for_the_card_fails_with_a_batch_that_fits():
    it = item(healthy(predicted_peak_gb=16.7, gpu=_gpu(total_gb=16.0, free_gb=15.5), batch_fitting_card=16),
              "fits_card")
    assert it.status == "fail" and "16.7 GB" in it.detail and "16.0 GB" in it.detail
    assert "training.batch_size = 16" in it.fix
    nothing = item(healthy(predicted_peak_gb=30.0, batch_fitting_card=None), "fits_card")
    assert nothing.status == "fail" and "smaller model" in nothing.fix


def test_fp32_on_gpu_warns_bf16_on_old_card_fails_mixed_on_cpu_warns():
    facts = healthy()
    facts.config.training.precision = "32"
    assert item(facts, "mixed_precision").status == "warn"
    assert "precision = 'auto'" in item(facts, "mixed_precision").fix
    old = healthy(gpu=_gpu(name="Tesla T4", compute_capability=(7, 5)))
    old.config.training.precision = "bf16-mixed"
    it = item(old, "mixed_precision")
    assert it.status == "fail" and "Tesla T4" in it.detail and "7.5" in it.detail and "fp16" in it.fix
    old.config.training.precision = "auto"  # auto picks fp16 there
    assert item(old, "mixed_precision").detail.startswith("16-mixed")
    cpu = healthy(gpus=[], gpu=None, torch_cuda_available=False)
    cpu.config.training.precision = "16-mixed"
    assert item(cpu, "mixed_precision").status == "warn"


def test_other_programs_listed_with_names_and_mb_and_fail_when_they_take_the_room():
    procs = [GpuProcess(pid=11, name="python", used_gb=6.0), GpuProcess(pid=12, name="Xorg", used_gb=0.2)]
    crowded = healthy(gpu=_gpu(used_gb=7.2, free_gb=4.8, processes=procs))
    it = item(crowded, "other_processes")
    assert it.status == "fail"
    assert "python (pid 11, 6144 MB)" in it.detail and "Xorg (pid 12, 205 MB)" in it.detail
    assert it.fix == "close python before training"
    roomy = healthy(gpu=_gpu(total_gb=24.0, used_gb=7.0, free_gb=17.0, processes=procs))
    assert item(roomy, "other_processes").status == "warn"
    desktop = healthy(gpu=_gpu(processes=[GpuProcess(pid=12, name="Xorg", used_gb=0.2)]))
    assert item(desktop, "other_processes").status == "ok"


def test_workers_on_windows_fail_and_too_many_warn():
    win = healthy(os_name="Windows")
    it = item(win, "workers")
    assert it.status == "fail" and "training.num_workers = 0" in it.fix
    many = healthy(cpu_count=4)
    many.config.training.num_workers = 16
    it = item(many, "workers")
    assert it.status == "warn" and "16 workers for 4 CPU cores" in it.detail and "num_workers = 3" in it.fix
    none = healthy()
    none.config.training.num_workers = 0
    assert item(none, "workers").status == "warn"
    win.config.training.num_workers = 0
    assert item(win, "workers").status == "ok"


def test_pinned_memory_off_for_a_gpu_run_warns():
    it = item(healthy(pin_memory=False), "pinned_memory")
    assert it.status == "warn" and "pin_memory" in it.fix
    cpu = healthy(gpus=[], gpu=None, torch_cuda_available=False, pin_memory=False)
    assert item(cpu, "pinned_memory").status == "ok"


def test_dataset_missing_invalid_or_with_bad_files():
    missing = item(healthy(dataset_exists=False), "dataset")
    assert missing.status == "fail" and "/data/ds does not exist" in missing.detail and "medseg data import" in missing.fix
    bad = item(healthy(dataset_can_train=False, dataset_verdict="no usable training pairs"), "dataset")
    assert bad.status == "fail" and "no usable training pairs" in bad.detail and "medseg data check /data/ds" in bad.fix
    layout = item(healthy(dataset_can_train=None, dataset_error="no images/ and masks/ folders"), "dataset")
    assert layout.status == "fail" and "no images/" in layout.detail
    some = item(healthy(dataset_problems=3), "dataset")
    assert some.status == "warn" and "3 bad file(s)" in some.detail


def test_gather_facts_on_this_machine_reads_torch_nvml_and_the_dataset(tmp_path):
    """The real gathering: CPU torch, a fake snapshot, a generated dataset, a memory model or none."""
    from medseg_gui.core.data.demo import generate_demo

    root = generate_demo(tmp_path / "ds", n=8, size=64)
    config = RunConfig()
    config.dataset.path = str(root)
    config.training.accelerator = "auto"
    snap = HardwareSnapshot(gpus=[], cpu_count=2, cpu_name="test", ram_total_gb=8.0, ram_available_gb=4.0,
                            nvml_error="no NVIDIA driver found", os_name="Linux")
    facts = pf.gather_facts(config, snapshot=snap, memory_model=None)
    assert facts.torch_version and facts.torch_cuda_available is False
    assert facts.dataset_can_train is True and facts.dataset_pairs["train"] > 0
    report = run_checks(facts)
    assert report.by_id("torch_gpu").status == "warn" and report.by_id("dataset").status == "ok"
    assert report.ok  # warnings only: a CPU machine may train
    # a GPU configuration with a (made-up) memory model gets a prediction and a fitting batch
    gpu = _gpu(total_gb=8.0, free_gb=7.5)
    snap.gpus = [gpu]
    config.training.accelerator = "gpu"
    facts = pf.gather_facts(config, snapshot=snap, memory_model=lambda q: 0.5 + 0.4 * q.batch_size,
                            check_dataset_files=False)
    assert facts.predicted_peak_gb == pytest.approx(0.5 + 0.4 * config.training.batch_size)
    assert facts.batch_fitting_free == 15 and facts.batch_fitting_card == 16
    # the default: the lead's model when core/planning/memory.py exists, else "unknown" said plainly
    facts = pf.gather_facts(config, snapshot=snap, check_dataset_files=False)
    assert facts.predicted_peak_gb is not None or "memory model" in facts.peak_note


# ---- pretrained weights: available / not available offline -------------------------------------------

def _fake_hub_cache(root, repo: str, weights: str = "model.safetensors"):
    """The layout huggingface_hub leaves: refs/main naming a snapshot with config.json and weights."""
    folder = root / ("models--" + repo.replace("/", "--"))
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / weights).write_bytes(b"x")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc123")
    return snap


def test_pretrained_availability_reads_the_local_cache_and_paths_without_network(tmp_path, monkeypatch):
    from medseg_gui.core.config import hub_id
    from medseg_gui.core.planning.weights import pretrained_availability

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config = RunConfig()
    config.training.variant = "b0"
    a = pretrained_availability(config)
    assert a.state == "offline" and "HF_HUB_OFFLINE" in a.detail  # conftest sets offline, as on this machine
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    assert pretrained_availability(config).state == "download"
    assert pretrained_availability(config, online=False).state == "offline"
    snap = _fake_hub_cache(tmp_path / "hub", hub_id("b0"), "pytorch_model.bin")
    a = pretrained_availability(config, online=False)
    assert a.state == "cached" and a.path == str(snap)
    config.training.variant = "b2"  # another variant's weights are not this one's
    assert pretrained_availability(config, online=False).state == "offline"
    config.training.pretrained = "scratch"
    assert pretrained_availability(config).state == "scratch"
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    config.training.pretrained = str(weights)
    assert pretrained_availability(config).state == "local"
    config.training.pretrained = str(tmp_path)  # a folder without config.json
    a = pretrained_availability(config)
    assert a.state == "bad" and "config.json" in a.detail


def test_pretrained_item_warns_offline_fails_for_hub_and_is_green_when_available(tmp_path):
    from medseg_gui.core.planning.weights import PretrainedAvailability

    repo = "nvidia/segformer-b4-finetuned-ade-512-512"
    offline = PretrainedAvailability("offline", "auto", repo, detail=f"{repo} is not on this computer")
    it = item(healthy(pretrained=offline), "pretrained")
    assert it.status == "warn" and it.detail.startswith("not available offline") and "random weights" in it.detail
    assert "Choose weights file…" in it.fix and "training.pretrained" in it.fix
    it = item(healthy(pretrained=PretrainedAvailability("offline", "hub", repo, detail="x")), "pretrained")
    assert it.status == "fail" and not run_checks(healthy(pretrained=PretrainedAvailability(
        "offline", "hub", repo, detail="x"))).ok
    cached = PretrainedAvailability("cached", "auto", repo, str(tmp_path), f"{repo} is in the local cache")
    it = item(healthy(pretrained=cached), "pretrained")
    assert it.status == "ok" and it.detail.startswith("available offline")
    bad = PretrainedAvailability("bad", "/nowhere", repo, "/nowhere", "/nowhere does not exist")
    assert item(healthy(pretrained=bad), "pretrained").status == "fail"


def test_gather_facts_reports_pretrained_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    snap = HardwareSnapshot(gpus=[], cpu_count=2, cpu_name="cpu", ram_total_gb=8.0, ram_available_gb=4.0)
    facts = pf.gather_facts(RunConfig(), snapshot=snap, memory_model=None, check_dataset_files=False)
    assert facts.pretrained.state == "offline"
    assert pf.run_checks(facts).by_id("pretrained").status == "warn"


def test_recommendation_warns_when_weights_are_not_available_offline(tmp_path, monkeypatch):
    from medseg_gui.core.planning.recommend import recommend

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    snap = HardwareSnapshot(gpus=[], cpu_count=2, cpu_name="cpu", ram_total_gb=8.0, ram_available_gb=4.0)
    rec = recommend(snap, memory_model=None)
    assert any("Pretrained weights not available offline" in w for w in rec.warnings)
    _fake_hub_cache(tmp_path / "empty-hub", rec.config.training.model_name if hasattr(
        rec.config.training, "model_name") else f"nvidia/segformer-{rec.config.training.variant}-finetuned-ade-512-512")
    assert not any("Pretrained" in w for w in recommend(snap, memory_model=None).warnings)


def test_checklist_offers_choose_weights_and_sets_the_path(qtbot, tmp_path):
    from medseg_gui.core.planning.weights import PRETRAINED_LICENCE, PretrainedAvailability
    from medseg_gui.gui.state import AppState
    from medseg_gui.gui.tools.checklist import PreflightChecklist

    state = AppState()
    repo = "nvidia/segformer-b4-finetuned-ade-512-512"
    facts = healthy(pretrained=PretrainedAvailability("offline", "auto", repo, detail="x"))
    checks: list = []
    checklist = PreflightChecklist(state, checker=lambda c: checks.append(c) or run_checks(facts))
    qtbot.addWidget(checklist)
    checklist.set_report(run_checks(facts), state.config)
    row = next(r for r in checklist.rows if r.item.id == "pretrained")
    chooser = row.chooser
    assert "non-commercial research" in chooser.note.text() and "non-commercial" in PRETRAINED_LICENCE
    assert chooser.download_button.isHidden()  # HF_HUB_OFFLINE is set: no download offered, none attempted
    assert not hasattr(next(r for r in checklist.rows if r.item.id == "config"), "chooser")
    (tmp_path / "folder").mkdir()
    assert not chooser.pick(str(tmp_path / "folder"))  # no config.json: refused, said why
    assert "config.json" in chooser.note.text() and state.config.training.pretrained == "auto"
    weights = tmp_path / "segformer.safetensors"
    weights.write_bytes(b"x")
    chooser.choose_file = lambda: str(weights)
    chooser.file_button.click()
    assert state.config.training.pretrained == str(weights.resolve())
    qtbot.waitUntil(lambda: bool(checks), timeout=10_000)  # checked again with the new path
    assert checks[-1].training.pretrained == str(weights.resolve())


def test_items_with_nothing_to_check_are_not_applicable_not_green(qtbot):
    from medseg_gui.gui.state import AppState
    from medseg_gui.gui.tools.checklist import PreflightChecklist

    facts = healthy(torch_cuda_available=False, gpus=[], gpu=None)
    facts.config.training.accelerator = "cpu"
    report = run_checks(facts)
    na = {i.id for i in report.items if not i.applies}
    assert {"vram_headroom", "pinned_memory", "other_processes"} <= na
    assert all(i.status == "ok" for i in report.items if not i.applies)
    assert report.by_id("config").applies and "[ n/a] Pinned memory" in report.text()
    checklist = PreflightChecklist(AppState(), checker=lambda c: report)
    qtbot.addWidget(checklist)
    checklist.set_report(report, facts.config)
    rows = {r.item.id: r for r in checklist.rows}
    assert rows["pinned_memory"].mark.text() == "–" and rows["config"].mark.text() == "✓"
