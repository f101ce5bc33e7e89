import dataclasses
import json
import subprocess
import sys

import pytest
from fake_nvml import FakeGpu, RaisingNvml, make_nvml

from medseg_gui.core import config as cfg
from medseg_gui.core.hardware import probe
from medseg_gui.core.data.summary import DatasetSummary
from medseg_gui.core.planning.memory import MemoryQuery, default_memory_model
from medseg_gui.core.planning.recommend import recommend

CPU_SNAP = probe(RaisingNvml())


def test_12_gb_override_gives_the_mainstream_preset():
    rec = recommend(CPU_SNAP, vram_gb=12, memory_model=None)
    d = rec.to_dict()
    assert (d["variant"], d["batch_size"], d["image_size"]) == ("b4", 8, 288)
    assert d["model_name"] == "nvidia/segformer-b4-finetuned-ade-512-512"
    assert any("12 GB" in r for r in d["reasons"])
    assert cfg.validate(rec.config) == []


def test_12_gb_with_the_calibrated_model_keeps_b4_and_fills_the_card():
    d = recommend(CPU_SNAP, vram_gb=12).to_dict()
    assert (d["variant"], d["image_size"]) == ("b4", 288) and d["batch_size"] > 8
    assert 0.6 * 12 <= d["predicted_peak_gb"] <= d["budget_gb"] < 12
    assert any("predicted peak" in r for r in d["reasons"])


def test_4_gb_gives_b0_with_accumulation():
    d = recommend(CPU_SNAP, vram_gb=4, memory_model=None).to_dict()
    assert d["variant"] == "b0" and d["accumulate_grad_batches"] == 4 and d["effective_batch_size"] == 8


@pytest.mark.parametrize("vram", [0, None])
def test_no_vram_is_cpu_tier(vram):
    rec = recommend(CPU_SNAP, vram_gb=vram)
    assert rec.tier.name == "cpu"
    assert rec.config.training.precision == "32" and rec.config.training.accelerator == "cpu"
    assert any("CPU" in w for w in rec.warnings)


def test_tier_follows_free_not_total_vram_and_warns_about_other_programs():
    snap = probe(make_nvml([FakeGpu(total_gb=12, used_gb=3.1)]))
    rec = recommend(snap)
    assert rec.tier.name == "entry"  # 8.9 GB free
    assert any("3.1 GB is used by other programs" in w for w in rec.warnings)
    assert rec.config.training.precision == "bf16-mixed"


def test_bf16_card_leaves_room_for_the_cuda_graph_and_says_what_it_costs():
    snap = probe(make_nvml([FakeGpu(total_gb=12.5, used_gb=0.5)]))
    graphed = recommend(snap)
    base = cfg.RunConfig()
    base.training.cuda_graphs = "off"
    ungraphed = recommend(snap, base=base)
    assert graphed.config.training.precision == "bf16-mixed"
    assert graphed.config.training.batch_size < ungraphed.config.training.batch_size
    note = [r for r in graphed.reasons if "CUDA graph" in r]
    assert note and f"batch {ungraphed.config.training.batch_size} would fit" in note[0]
    assert not any("CUDA graph" in r for r in ungraphed.reasons)


def test_when_the_tier_batch_fits_graphed_in_one_step_there_is_no_accumulation():
    """24 GB: b5 at 288 px fits graphed above the tier's batch of 32 (the fit proof ran b5 . 43 there),
    so one step per batch and the larger batch."""
    rec = recommend(probe(make_nvml([FakeGpu(total_gb=24, used_gb=0.0)])))
    tr = rec.config.training
    assert (tr.variant, tr.cuda_graphs, tr.accumulate_grad_batches) == ("b5", "auto", 1) and tr.batch_size > 32
    assert rec.predicted_peak_gb <= rec.budget_gb


@pytest.mark.parametrize("card", [16])
def test_when_the_tier_batch_needs_room_the_graph_would_take_the_graph_accumulates(card):
    """The tier's effective batch of 32 (b5) fits graphed only as 16 x 2: the graph now accumulates
    itself, so the plan keeps it, at the batch that keeps the effective batch, and says both."""
    rec = recommend(probe(make_nvml([FakeGpu(total_gb=card, used_gb=0.0)])))
    tr = rec.config.training
    assert not [w for w in rec.warnings if "No CUDA graph" in w]
    assert tr.cuda_graphs == "auto" and (tr.batch_size, tr.accumulate_grad_batches) == (16, 2)
    assert rec.to_dict()["effective_batch_size"] == 32
    note = [r for r in rec.reasons if "CUDA graph" in r]
    assert note and "accumulates the micro-batches inside it" in note[0]
    assert any("Gradient accumulation 2 keeps the tier's effective batch of 32" in r for r in rec.reasons)
    # the plan's peak is the graphed one, within the budget
    from medseg_gui.core.planning.recommend import predicted_peak

    assert rec.predicted_peak_gb == pytest.approx(predicted_peak(default_memory_model(), rec.config, graphs=True))
    assert rec.predicted_peak_gb <= rec.budget_gb
    # plus the persistent gradient buffer (measured +0.31 GiB for b5 · 16 x 2 on an H200; b5's fp32 gradients)
    query = MemoryQuery("b5", 16, rec.config.dataset.image_size, rec.config.dataset.num_classes,
                        tr.precision, compiled=True, graphs=True)
    assert rec.predicted_peak_gb - default_memory_model()(query) == pytest.approx(84.7e6 * 4 / 2**30)


@pytest.mark.parametrize("graph_cost, words", [(1.3, "only batch 1 would fit"), (2.5, "not even batch 1 fits")])
def test_a_graph_with_room_for_one_image_or_none_is_turned_off_and_the_plan_says_why(graph_cost, words):
    """Graphed only batch 1 (SegFormer trains poorly at 1) or nothing fits: the plan runs ungraphed,
    and its predicted peak is the ungraphed one, within the budget."""
    def model(q: MemoryQuery) -> float:
        return 1.0 + 0.5 * q.batch_size + (graph_cost if q.graphs else 0.0)

    rec = recommend(CPU_SNAP, vram_gb=3.8, memory_model=model)  # budget 3.05: batch 4 ungraphed
    tr = rec.config.training
    assert tr.cuda_graphs == "off" and tr.batch_size == 4 and tr.accumulate_grad_batches == 2
    warning = [w for w in rec.warnings if "No CUDA graph" in w]
    assert warning and words in warning[0]
    assert rec.predicted_peak_gb == pytest.approx(3.0) and rec.predicted_peak_gb <= rec.budget_gb


def test_old_gpu_gets_fp16():
    snap = probe(make_nvml([FakeGpu(name="Tesla T4", total_gb=16, used_gb=0.3, cc=(7, 5))]))
    rec = recommend(snap)
    assert rec.config.training.precision == "16-mixed"
    assert any("fp16" in r for r in rec.reasons)


def test_gpu_index_is_honoured():
    snap = probe(make_nvml([FakeGpu(total_gb=24, used_gb=0.2), FakeGpu(total_gb=4, used_gb=0.2)]))
    assert recommend(snap).tier.name == "high"
    assert recommend(snap, gpu_index=1).tier.name == "low"


def test_dataset_summary_adapts_classes_and_image_size():
    rec = recommend(CPU_SNAP, vram_gb=12, dataset=DatasetSummary(num_classes=3, image_size=150,
                                                                    class_names=["bg", "liver", "tumour"]))
    assert rec.config.dataset.num_classes == 3 and rec.config.dataset.class_names == ["bg", "liver", "tumour"]
    assert rec.config.dataset.image_size == 160
    assert cfg.validate(rec.config) == []


def test_base_config_path_and_output_are_kept():
    base = cfg.RunConfig()
    base.dataset.path = "/data/gi"
    base.training.output_dir = "/tmp/out"
    rec = recommend(CPU_SNAP, vram_gb=8, base=base)
    assert rec.config.dataset.path == "/data/gi" and rec.config.training.output_dir == "/tmp/out"
    assert base.training.variant == "b4"  # the base is not mutated


def linear_model(q: MemoryQuery) -> float:
    """A toy memory model: 1 GB fixed + 0.25 GB per image at 288 px for b4-like cost."""
    per_image = {"b0": 0.02, "b2": 0.1, "b4": 0.25, "b5": 0.5}.get(q.variant, 0.2)
    return 1.0 + per_image * q.batch_size * (q.image_size / 288) ** 2


def test_memory_model_grows_batch_and_keeps_effective_batch():
    rec = recommend(CPU_SNAP, vram_gb=12, memory_model=linear_model)
    tr = rec.config.training
    assert tr.variant == "b4" and tr.batch_size == 40  # (12 - 8 % margin - 1) / 0.25
    assert tr.accumulate_grad_batches == 1
    assert rec.predicted_peak_gb <= rec.budget_gb
    heavy_b0 = lambda q: 1.0 + 0.5 * q.batch_size
    low = recommend(CPU_SNAP, vram_gb=3.3, memory_model=heavy_b0)  # budget 2.55 -> batch 3
    assert low.config.training.batch_size == 3 and low.config.training.accumulate_grad_batches == 3
    assert any("keeps the tier's effective batch of 8" in r for r in low.reasons)
    none_fits = recommend(CPU_SNAP, vram_gb=1.6, memory_model=heavy_b0)
    assert none_fits.tier.name == "cpu" and any("does not fit" in w for w in none_fits.warnings)


def test_memory_model_steps_down_and_says_so():
    huge = lambda q: 100.0 if q.variant == "b5" else linear_model(q)
    rec = recommend(CPU_SNAP, vram_gb=16, memory_model=huge)
    assert rec.config.training.variant != "b5"
    assert any("stepping down" in w for w in rec.warnings)


def test_cli_recommend_json_contract():
    out = subprocess.run([sys.executable, "-m", "medseg_gui.cli", "recommend", "--vram-gb", "12", "--json"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    for key in ("tier", "variant", "batch_size", "image_size", "reasons", "warnings", "config",
                "effective_batch_size", "precision", "predicted_peak_gb", "budget_gb"):
        assert key in data


def test_cli_hardware_json_without_driver_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "medseg_gui.cli", "hardware", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["cpu_count"] >= 1 and "gpus" in data


def test_cli_config_validate(tmp_path):
    good = tmp_path / "good.toml"
    cfg.save(cfg.RunConfig(), good)
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nbatch_size = 0\nvariant = 'b9'\n")
    run = lambda f: subprocess.run([sys.executable, "-m", "medseg_gui.cli", "config", "validate", str(f)],
                                   capture_output=True, text=True)
    assert run(good).returncode == 0
    proc = run(bad)
    assert proc.returncode == 1
    assert "training.batch_size" in proc.stdout and "training.variant" in proc.stdout


def test_cli_recommend_save_writes_valid_config(tmp_path):
    out = tmp_path / "rec.toml"
    subprocess.run([sys.executable, "-m", "medseg_gui.cli", "recommend", "--vram-gb", "6", "--save", str(out)],
                   check=True, capture_output=True)
    assert cfg.load_and_validate(out).training.variant == "b2"


def test_bigger_settings_that_fit_are_offered_with_their_cost_not_switched_to():
    rec = recommend(CPU_SNAP, vram_gb=8)
    assert rec.config.training.variant == "b2" and rec.config.dataset.image_size == 256
    alts = {(a.variant, a.image_size): a for a in rec.alternatives}
    assert ("b4", 256) in alts and ("b2", 320) in alts
    for a in rec.alternatives:
        assert a.batch_size >= 2 and a.predicted_peak_gb <= rec.budget_gb
        assert "x the time per epoch" in a.note
    assert recommend(CPU_SNAP, vram_gb=8).to_dict()["alternatives"][0]["predicted_peak_gb"] > 0


def test_cli_recommend_probe_is_skipped_clearly_without_a_gpu():
    proc = subprocess.run([sys.executable, "-m", "medseg_gui.cli", "recommend", "--vram-gb", "8", "--probe", "--json"],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert data["fit_probe"] is None and any("fit probe skipped" in w for w in data["warnings"])


# ---- which card, and several cards (one identity for a GPU) -----------------------------------------

def _h200s(used0: float, used1: float, environ: dict | None = None):
    return probe(make_nvml([FakeGpu(name="NVIDIA H200", total_gb=140.0, used_gb=used0, cc=(9, 0)),
                            FakeGpu(name="NVIDIA H200", total_gb=140.0, used_gb=used1, cc=(9, 0))],
                           environ=environ))


def test_visible_devices_1_sizes_the_card_that_trains():
    """The issue's first scenario: CUDA_VISIBLE_DEVICES=1 with nvidia-smi's GPU 1 nearly full."""
    snap = _h200s(0.3, 136.0, environ={"CUDA_VISIBLE_DEVICES": "1"})
    rec = recommend(snap)
    assert rec.gpu.index == 1 and rec.gpu.cuda_index == 0
    assert rec.free_gb == pytest.approx(4.0)
    assert rec.config.training.gpus == [snap.gpus[1].uuid] and rec.config.training.devices == 1
    assert rec.predicted_peak_gb <= rec.budget_gb < 4.0
    d = rec.to_dict()
    assert d["gpu"]["index"] == 0 and d["gpu"]["nvml_index"] == 1 and d["gpu"]["uuid"] == snap.gpus[1].uuid


def test_busy_gpu_0_plans_and_names_the_idle_card():
    snap = _h200s(134.0, 0.5)
    rec = recommend(snap)
    assert rec.gpu.cuda_index == 1 and rec.config.training.gpus == [snap.gpus[1].uuid]
    assert recommend(snap, gpu_index=0).free_gb == pytest.approx(6.0)  # asked for: sized exactly there
    assert recommend(snap, gpus=["0"]).config.training.gpus == ["0"]  # kept in the user's words


def test_a_gpu_that_does_not_exist_is_one_clear_error():
    snap = _h200s(0.5, 0.5)
    with pytest.raises(ValueError, match="there is no GPU 5: CUDA sees 0 = NVIDIA H200"):
        recommend(snap, gpu_index=5)
    base = cfg.RunConfig()
    base.training.gpus = ["GPU-does-not-exist"]
    with pytest.raises(ValueError, match="no GPU has the UUID"):
        recommend(snap, base=base)


def test_two_gpus_size_the_per_gpu_batch_from_the_smallest_free_memory_and_explain_the_batch():
    snap = _h200s(0.5, 130.0)  # 139.5 and 10 GB free
    both = recommend(snap, gpus=["0", "1"])
    small_alone = recommend(snap, gpus=["1"])
    tr = both.config.training
    assert both.free_gb == pytest.approx(10.0) and both.gpu.cuda_index == 1
    assert [g.cuda_index for g in both.gpus] == [0, 1] and tr.devices == 2 and tr.gpus == ["0", "1"]
    assert both.tier.name == small_alone.tier.name == "mainstream"
    # DDP adds gradient buckets and NCCL buffers on each card: never a larger batch than one card alone
    assert tr.batch_size <= small_alone.config.training.batch_size
    assert both.predicted_peak_gb <= both.budget_gb
    d = both.to_dict()
    assert d["effective_batch_size"] == tr.batch_size * 2 * tr.accumulate_grad_batches
    assert d["devices"] == 2 and [g["index"] for g in d["gpus"]] == [0, 1]
    why = next(r for r in both.reasons if r.startswith("Effective batch"))
    assert f"batch {tr.batch_size} per GPU x 2 GPUs" in why and f"Learning rate {tr.lr:g}" in why
    assert any("2 GPUs: GPU 0 NVIDIA H200 (139.5 GB free), GPU 1 NVIDIA H200 (10.0 GB free)" in r for r in both.reasons)


def test_ddp_memory_is_a_named_addition_per_gpu():
    from medseg_gui.core.planning import memory
    model = memory.default_memory_model()
    q = MemoryQuery("b4", 8, 288, 4, "bf16-mixed")
    extra = model(dataclasses.replace(q, ddp=True)) - model(q)
    assert extra == pytest.approx(memory.ddp_extra_gb("b4"))
    assert extra == pytest.approx(64.1e6 * memory.DDP_GRADIENT_BYTES_PER_PARAM / 2**30 + memory.NCCL_WORKSPACE_GB)


def test_cuda_visible_devices_empty_plans_for_the_cpu():
    rec = recommend(_h200s(0.5, 0.5, environ={"CUDA_VISIBLE_DEVICES": ""}))
    assert rec.tier.name == "cpu" and rec.config.training.gpus == []
    assert any("hides every GPU" in w for w in rec.warnings)


def test_reasons_badge_and_cli_name_the_tier_the_same_way():
    rec = recommend(CPU_SNAP, vram_gb=7)
    assert rec.tier.label == "Entry (5-9 GB free)"
    assert any(r.startswith(f"Tier {rec.tier.label}:") for r in rec.reasons)
    assert rec.to_dict()["tier_label"] == rec.tier.label


# ---- one predicted peak per plan (recommend and the session's RunStarted) ---------------------------

@pytest.mark.parametrize("used1", [136.0, 0.6])  # 4 GB free (b0 plan) and an idle card (b5 plan)
def test_the_session_reports_and_checks_the_peak_the_plan_was_sized_with(monkeypatch, used1):
    """Measured on 2 x H200: recommend said 3.20 GB, the run's RunStarted 2.30 GB for the same plan,
    because the run re-checked the graph against free memory that no longer had its own CUDA context
    in it, dropped the graph, and asked a different formula. Now both ask recommend.predicted_peak,
    on the same free-memory basis, so the graph the plan fitted is kept and the numbers agree."""
    import types

    from medseg_gui.core import hardware
    from medseg_gui.core.engine import session as session_mod
    from medseg_gui.core.planning.memory import default_memory_model
    from medseg_gui.core.planning.recommend import graphs_possible
    from medseg_gui.core.planning.speed import check_graph_memory, plan_cuda_graphs

    rec = recommend(_h200s(0.3, used1, environ={"CUDA_VISIBLE_DEVICES": "1"}))
    tr = rec.config.training
    assert graphs_possible(rec.config) and tr.accumulate_grad_batches == 1 and tr.cuda_graphs == "auto"
    fake = types.SimpleNamespace(config=rec.config, batch_size=tr.batch_size)
    # the session's graph check, seeing the free memory the plan saw
    monkeypatch.setattr(hardware, "free_for_plan_gb", lambda: rec.free_gb)
    if default_memory_model() is None:
        pytest.skip("no packaged memory calibration")
    memory = session_mod.TrainingSession._graph_memory(fake, tr.precision)
    assert memory["budget_gb"] == pytest.approx(rec.budget_gb)
    assert memory["graph_gb"] == pytest.approx(rec.predicted_peak_gb)
    plan = check_graph_memory(plan_cuda_graphs("auto", on_cuda=True, devices=1, precision=tr.precision), **memory)
    assert plan.enabled, plan.reason
    # RunStarted's number for the run as it then runs (graphed, not compiled: compile waits when graphed)
    monkeypatch.setattr(session_mod, "_vram_total", lambda trainer: 140.0)
    module = types.SimpleNamespace(cuda_graphs=True, compile_mode=None)
    started = session_mod.TrainingSession._predicted_peak(fake, object(), module)
    assert started == pytest.approx(rec.predicted_peak_gb)


def test_the_demo_on_a_huge_card_keeps_enough_steps_per_epoch_for_the_graph(monkeypatch):
    """`medseg train --demo` on a 140 GB card planned batch 190 for the demo's 192 training slices: one
    step an epoch, so the CUDA graph (captured after its warm-up steps) never ran. The demo's size now
    reaches the recommendation, which keeps about 8 steps an epoch."""
    import medseg_gui.core.hardware as hardware
    from gui_fakes import gpu, snapshot
    from medseg_gui.cli.train_cmd import demo_config
    from medseg_gui.core.planning.speed import GRAPH_WARMUP_STEPS

    monkeypatch.setattr(hardware, "probe", lambda *a, **k: snapshot(gpu(name="NVIDIA H200", total=143.0, used=3.2,
                                                                      cc=(9, 0))))
    config = demo_config()
    assert config.dataset.path == "demo"
    steps = 192 // config.training.batch_size
    assert steps > GRAPH_WARMUP_STEPS, (config.training.batch_size, steps)


@pytest.mark.parametrize("card", [4, 8])
def test_a_plan_predicts_the_peak_its_run_will_report(card):
    """One predicted peak per plan: compile 'auto' is decided from the dataset's size as the session decides
    it, so the plan's number is the one RunStarted reports (a short run on a 4 GB card was planned at 3.2 GB
    as if compiled and reported 2.3 GB uncompiled)."""
    from medseg_gui.core.planning import speed
    from medseg_gui.core.planning.recommend import graphs_possible, predicted_peak

    model = default_memory_model()
    base = cfg.RunConfig()
    base.training.cuda_graphs = "off"  # graphed peaks do not depend on compiling; ungraphed ones do
    rec = recommend(CPU_SNAP, vram_gb=card, dataset=DatasetSummary(num_classes=4, train_images=192), base=base)
    tr = rec.config.training
    graphs = graphs_possible(rec.config)
    # the session's own decision for a fresh run (core/engine/session.py): batches per epoch x epochs
    total = (192 // tr.batch_size) * tr.epochs // tr.accumulate_grad_batches * tr.accumulate_grad_batches
    compiles = speed.plan_compile(tr.compile, on_cuda=True, total_steps=total, whole_step_graph=graphs).enabled
    assert not compiles  # a few thousand steps: too short to repay compiling
    at_run = predicted_peak(model, rec.config, tr.batch_size, graphs=graphs, compiled=compiles)
    assert rec.predicted_peak_gb == pytest.approx(at_run)
    assert predicted_peak(model, rec.config, compiled=True) > at_run + 0.1  # what the plan used to say


def test_a_long_run_is_planned_compiled_and_an_unknown_dataset_plans_for_it():
    from medseg_gui.core.planning.recommend import predicted_peak

    model = default_memory_model()
    base = cfg.RunConfig()
    base.training.cuda_graphs = "off"
    long = recommend(CPU_SNAP, vram_gb=12, dataset=DatasetSummary(num_classes=4, train_images=38_000), base=base)
    assert long.predicted_peak_gb == pytest.approx(predicted_peak(model, long.config, compiled=True))
    assert long.predicted_peak_gb > predicted_peak(model, long.config, compiled=False) + 0.1
    unknown = recommend(CPU_SNAP, vram_gb=12, base=base)
    assert unknown.predicted_peak_gb == pytest.approx(predicted_peak(model, unknown.config, compiled=True))
