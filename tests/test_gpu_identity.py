"""One identity for a GPU: NVML's cards mapped to CUDA ordinals the way CUDA numbers them, and the
user's choice (training.gpus, --gpu, --gpus) resolved against that numbering."""

from __future__ import annotations

import os

import pytest
from fake_nvml import FakeGpu, make_nvml

from medseg_gui.core import gpu_identity as gi
from medseg_gui.core import hardware as hw
from medseg_gui.core.gpu_identity import select_gpu
from medseg_gui.core.hardware import probe


class Machine:
    """A fake machine whose process environment a test changes: ``m.env("1")`` then ``m.probe()``."""

    def __init__(self, cards: list[FakeGpu]):
        self.nvml = make_nvml(cards)

    def env(self, visible: str | None = None, order: str | None = None) -> None:
        self.nvml.process_environ.clear()
        for key, value in ((hw.VISIBLE_ENV, visible), (hw.ORDER_ENV, order)):
            if value is not None:
                self.nvml.process_environ[key] = value

    def probe(self):
        return probe(self.nvml)

    def uuid(self, i: int) -> str:
        return self.nvml.nvmlDeviceGetUUID(i)


def two_h200(busy0: bool = False) -> list[FakeGpu]:
    """The issue's machine: two identical cards; GPU 0 held by another program when ``busy0``."""
    return [FakeGpu(name="NVIDIA H200", total_gb=140.0, used_gb=134.0 if busy0 else 0.5, cc=(9, 0)),
            FakeGpu(name="NVIDIA H200", total_gb=140.0, used_gb=0.5, cc=(9, 0))]


def ordinals(snap):
    return {g.index: g.cuda_index for g in snap.gpus}


def test_unset_means_every_card_and_identical_cards_keep_pci_order():
    snap = Machine(two_h200()).probe()
    assert ordinals(snap) == {0: 0, 1: 1}
    assert snap.gpus[0].uuid != snap.gpus[1].uuid and snap.gpus[0].uuid.startswith("GPU-")
    assert snap.gpus[0].pci_bus_id == "00000000:01:00.0"
    assert snap.cuda_device_order == "FASTEST_FIRST" and snap.cuda_visible_devices is None


def test_the_process_environment_is_read_when_no_machine_is_injected(monkeypatch):
    monkeypatch.setenv(hw.VISIBLE_ENV, "1")
    nvml = make_nvml(two_h200())
    del nvml.process_environ  # a real binding describes no environment: this process's is used
    assert ordinals(probe(nvml)) == {0: None, 1: 0}


def test_visible_devices_1_makes_nvml_card_1_cuda_0():
    m = Machine(two_h200())
    m.env("1")
    snap = m.probe()
    assert ordinals(snap) == {0: None, 1: 0}
    assert [g.index for g in snap.cuda_gpus] == [1]
    assert select_gpu(snap).index == 1  # the only card CUDA sees, whatever NVML lists first
    assert select_gpu(snap, 0).index == 1


def test_visible_devices_reordered_and_by_uuid():
    m = Machine(two_h200())
    m.env("1,0")
    assert ordinals(m.probe()) == {0: 1, 1: 0}
    m.env(m.uuid(1))  # full UUID
    assert ordinals(m.probe()) == {0: None, 1: 0}
    m.env(m.uuid(1)[:14] + ",0")  # unique prefix, then an index
    assert ordinals(m.probe()) == {0: 1, 1: 0}


def test_an_invalid_entry_ends_the_list_as_cuda_does():
    m = Machine([FakeGpu(), FakeGpu(), FakeGpu()])
    m.env("0,2,-1,1")
    assert ordinals(m.probe()) == {0: 0, 1: None, 2: 1}
    m.env("2,7,0")
    assert ordinals(m.probe()) == {0: None, 1: None, 2: 0}
    m.env("GPU-0000,1")  # ambiguous prefix (every fake UUID starts GPU-0000): invalid at once
    assert ordinals(m.probe()) == {0: None, 1: None, 2: None}
    m.env("1,1,0")  # a repeated card ends the list too
    assert ordinals(m.probe()) == {0: None, 1: 0, 2: None}


def test_empty_visible_devices_means_no_gpu():
    m = Machine(two_h200())
    m.env("")
    snap = m.probe()
    assert snap.cuda_gpus == [] and select_gpu(snap) is None
    with pytest.raises(gi.GpuSelectionError, match="hides every card"):
        gi.resolve_gpus(snap, ["0"])


def test_fastest_first_puts_the_newer_card_first_pci_bus_id_keeps_nvml_order():
    m = Machine([FakeGpu(name="Tesla T4", cc=(7, 5), cores=2560), FakeGpu(name="NVIDIA A100", cc=(8, 0), cores=6912)])
    assert ordinals(m.probe()) == {0: 1, 1: 0}  # CUDA's default: fastest first
    m.env(order="PCI_BUS_ID")
    assert ordinals(m.probe()) == {0: 0, 1: 1}
    m.env("0", order="FASTEST_FIRST")  # indices count in CUDA's order: "0" is the A100
    snap = m.probe()
    assert ordinals(snap) == {0: None, 1: 0} and snap.cuda_gpus[0].name == "NVIDIA A100"


def test_mig_id_maps_to_its_card():
    m = Machine([FakeGpu(), FakeGpu(mig_uuids=["MIG-aaaa1111-2222-3333-4444-555566667777"])])
    m.env("MIG-aaaa1111")
    snap = m.probe()
    assert ordinals(snap) == {0: None, 1: 0} and snap.gpus[1].mig_enabled
    m.env(f"MIG-{m.uuid(0)}/1/0")  # the older MIG-GPU-<uuid>/gi/ci form
    assert ordinals(m.probe()) == {0: 0, 1: None}


def test_busy_gpu_0_the_choice_is_the_idle_card():
    snap = Machine(two_h200(busy0=True)).probe()
    (chosen,) = gi.choose_gpus(snap, (), 1)
    assert chosen.cuda_index == 1
    plan = gi.plan_training_devices(snap, [], 1)
    assert plan.ordinals == [1] and "most free memory" in plan.note


def test_resolve_by_index_uuid_and_errors():
    m = Machine(two_h200())
    m.env("1")
    snap = m.probe()
    uuid0, uuid1 = m.uuid(0), m.uuid(1)
    assert gi.resolve_gpus(snap, ["0"])[0].uuid == uuid1
    assert gi.resolve_gpus(snap, [uuid1[:14]])[0].index == 1
    with pytest.raises(gi.GpuSelectionError, match="there is no GPU 1: CUDA sees 0 = NVIDIA H200"):
        gi.resolve_gpus(snap, ["1"])
    with pytest.raises(gi.GpuSelectionError, match="hidden from CUDA"):
        gi.resolve_gpus(snap, [uuid0])
    with pytest.raises(gi.GpuSelectionError, match="no GPU has the UUID"):
        gi.resolve_gpus(snap, ["GPU-ffff"])
    with pytest.raises(gi.GpuSelectionError, match="named twice"):
        gi.resolve_gpus(snap, ["0", uuid1])


def test_plan_trusts_torch_numbering_and_inherits_rank_0s_choice():
    m = Machine(two_h200())
    snap = m.probe()
    uuid0, uuid1 = m.uuid(0), m.uuid(1)
    assert gi.plan_training_devices(snap, [uuid1], 1).ordinals == [1]
    # torch numbers the cards the other way round (a FASTEST_FIRST guess gone wrong): torch wins
    assert gi.plan_training_devices(snap, [uuid1], 1, uuids_by_ordinal=[uuid1, uuid0]).ordinals == [0]
    assert gi.plan_training_devices(snap, ["0", "1"], 1).ordinals == [0, 1]  # gpus decides the count
    assert gi.plan_training_devices(snap, [], 2).ordinals == [0, 1]
    assert gi.plan_training_devices(snap, [], 1, inherited="1").ordinals == [1]
    with pytest.raises(gi.GpuSelectionError, match="3 GPUs asked for"):
        gi.plan_training_devices(snap, [], 3)


def test_plan_without_nvml_uses_indices_or_torch_uuids():
    from medseg_gui.core.hardware import cpu_only_snapshot

    snap = cpu_only_snapshot("no driver")
    assert gi.plan_training_devices(snap, [], 2).ordinals == [0, 1]
    assert gi.plan_training_devices(snap, ["1"], 1).ordinals == [1]
    assert gi.plan_training_devices(snap, ["GPU-bb"], 1, uuids_by_ordinal=["GPU-aa11", "GPU-bb22"]).ordinals == [1]
    with pytest.raises(gi.GpuSelectionError):
        gi.plan_training_devices(snap, ["GPU-cc"], 1, uuids_by_ordinal=["GPU-aa11"])


def test_snapshot_json_carries_both_numbers_and_the_uuid():
    m = Machine(two_h200())
    m.env("1")
    data = m.probe().to_dict()
    assert [g["cuda_index"] for g in data["gpus"]] == [None, 0] and data["gpus"][1]["index"] == 1
    assert data["gpus"][1]["uuid"] == m.uuid(1) and data["cuda_visible_devices"] == "1"


def test_labels_name_the_cuda_ordinal_and_nvidia_smi_number():
    m = Machine(two_h200())
    m.env("1")
    hidden, shown = m.probe().gpus
    assert gi.gpu_label(shown) == "GPU 0"
    assert "nvidia-smi #1" in gi.gpu_description(shown)
    assert "hidden from CUDA" in gi.gpu_label(hidden)
    assert [g.index for g in gi.by_cuda_index([hidden, shown])] == [1, 0]


# ---- the places that speak of a GPU: CLI, pre-flight, session -------------------------------------

@pytest.fixture
def fake_machine(monkeypatch):
    """Route every ``hardware.probe()`` (CLI, pre-flight, session) to a fake machine; returns it."""
    from medseg_gui.core import hardware
    real = hardware.probe
    m = Machine(two_h200(busy0=True))
    monkeypatch.setattr(hardware, "probe", lambda nvml=None, with_processes=False, environ=None:
                        real(m.nvml, with_processes, environ))
    return m


def test_cli_recommend_gpu_missing_exits_2_with_one_line(fake_machine, capsys):
    from medseg_gui.cli import main

    assert main(["recommend", "--gpu", "7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: there is no GPU 7: CUDA sees 0 = NVIDIA H200") and "Traceback" not in err
    assert main(["recommend", "--gpus", "0,GPU-nope"]) == 2
    assert main(["recommend", "--gpus", "0", "--vram-gb", "8"]) == 2


def test_cli_recommend_sizes_the_named_cards(fake_machine, capsys, tmp_path):
    import json

    from medseg_gui.cli import main
    from medseg_gui.core import config as cfg
    assert main(["recommend", "--gpu", fake_machine.uuid(0)[:14], "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["gpu"]["index"] == 0 and d["free_gb"] == pytest.approx(6.0)
    out = tmp_path / "two.toml"
    assert main(["recommend", "--gpus", "0,1", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Tier: " in text and "batch" in text and "per GPU x 2 GPUs" in text
    saved = cfg.load(out)
    assert saved.training.gpus == ["0", "1"] and saved.training.devices == 2


def test_cli_hardware_numbers_cards_as_cuda_does(fake_machine, capsys):
    from medseg_gui.cli import main

    fake_machine.env("1")
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "GPU 0: NVIDIA H200" in out and "nvidia-smi #1" in out
    assert "nvidia-smi GPU 0 (hidden from CUDA)" in out and "CUDA_VISIBLE_DEVICES=1" in out


def test_preflight_red_item_when_a_configured_gpu_is_missing(fake_machine):
    from medseg_gui.core.tools import preflight as pf
    from medseg_gui.core.config import RunConfig

    config = RunConfig()
    config.training.accelerator = "gpu"
    config.dataset.path = "demo"
    config.training.gpus = ["3"]
    facts = pf.gather_facts(config, memory_model=lambda q: 5.0, check_dataset_files=False)
    facts.torch_cuda_available = True
    report = pf.run_checks(facts)
    item = report.by_id("gpu_choice")
    assert item.status == "fail" and "there is no GPU 3" in item.detail and "training.gpus" in item.fix
    assert not report.ok


def test_preflight_red_when_the_configured_card_lacks_the_memory(fake_machine):
    from medseg_gui.core.tools import preflight as pf
    from medseg_gui.core.config import RunConfig

    config = RunConfig()
    config.training.accelerator = "gpu"
    config.dataset.path = "demo"
    config.training.gpus = ["0"]  # the busy card: 6 GB free
    facts = pf.gather_facts(config, memory_model=lambda q: 20.0, check_dataset_files=False)
    facts.torch_cuda_available = True
    report = pf.run_checks(facts)
    assert report.by_id("gpu_choice").status == "ok" and "GPU 0 NVIDIA H200" in report.by_id("gpu_choice").detail
    headroom = report.by_id("vram_headroom")
    assert headroom.status == "fail" and "on GPU 0 NVIDIA H200" in headroom.detail
    config.training.gpus = []  # the most free card: GPU 1 with 139.5 GB
    facts = pf.gather_facts(config, memory_model=lambda q: 20.0, check_dataset_files=False)
    facts.torch_cuda_available = True
    report = pf.run_checks(facts)
    assert facts.gpu.cuda_index == 1 and report.by_id("vram_headroom").status == "ok"


class _TrainerBuilt(Exception):
    pass


@pytest.mark.parametrize("gpus, devices, expected", [([], 1, [1]), (["0"], 1, [0]), (["0", "1"], 1, [0, 1])])
def test_session_gives_lightning_the_ordinals_of_the_chosen_cards(fake_machine, monkeypatch, tmp_path,
                                                                 gpus, devices, expected):
    """No CUDA here: the GPU path runs up to the Trainer, whose arguments are captured."""
    import lightning
    import torch

    from engine_helpers import FakeDataModule, tiny_config
    from medseg_gui.core.engine import callbacks
    from medseg_gui.core.planning import precision
    from medseg_gui.core.events import RunFailed
    from medseg_gui.core.engine.session import TrainingSession

    captured = {}

    def trainer(**kwargs):
        captured.update(kwargs)
        captured["env"] = dict(os.environ)
        raise _TrainerBuilt

    monkeypatch.setattr(lightning, "Trainer", trainer)
    monkeypatch.setattr(precision, "resolve_accelerator", lambda requested: "gpu")
    sampled = []
    monkeypatch.setattr(callbacks, "cuda_vram_probe", lambda index: sampled.append(index) or (lambda: None))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    config = tiny_config(tmp_path)
    config.training.output_dir = str(tmp_path / "runs")
    config.training.gpus, config.training.devices = gpus, devices
    config.training.cuda_graphs = config.training.compile = "off"
    session = TrainingSession(config, lambda e: None, datamodule_factory=FakeDataModule(8, 4))
    result = session.run()
    assert isinstance(result, RunFailed) and captured, result
    assert captured["devices"] == expected
    assert sampled == [expected[0]]  # the VRAM sampler reads the card that trains
    assert captured["strategy"] == ("ddp" if len(expected) > 1 else "auto")
    if len(expected) > 1:  # the DDP ranks inherit rank 0's choice, and the variable is gone afterwards
        assert captured["env"][gi.TRAIN_DEVICES_ENV] == "0,1"
    assert gi.TRAIN_DEVICES_ENV not in os.environ


def test_session_fails_clearly_for_a_missing_gpu(fake_machine, monkeypatch, tmp_path):
    from engine_helpers import FakeDataModule, tiny_config
    from medseg_gui.core.planning import precision
    from medseg_gui.core.events import RunFailed
    from medseg_gui.core.engine.session import TrainingSession

    monkeypatch.setattr(precision, "resolve_accelerator", lambda requested: "gpu")
    config = tiny_config(tmp_path)
    config.training.output_dir = str(tmp_path / "runs")
    config.training.gpus = ["GPU-ffff"]
    result = TrainingSession(config, lambda e: None, datamodule_factory=FakeDataModule(8, 4)).run()
    assert isinstance(result, RunFailed) and result.kind == "config"
    assert "no GPU has the UUID 'GPU-ffff'" in result.reason and "training.gpus" in result.hint


def test_trial_runs_use_the_first_chosen_card(fake_machine, monkeypatch):
    from medseg_gui.core.tools import trial_run
    from medseg_gui.core.config import RunConfig

    config = RunConfig()
    assert trial_run.trial_device(config, "gpu") == [1]  # GPU 0 is busy
    config.training.gpus = ["0", "1"]
    assert trial_run.trial_device(config, "gpu") == [0]
    assert trial_run.trial_device(config, "cpu") == 1
    config.training.gpus = ["9"]
    with pytest.raises(trial_run.ToolError, match="there is no GPU 9"):
        trial_run.trial_device(config, "gpu")


def test_fit_probe_child_sees_only_the_card_being_planned(monkeypatch):
    import subprocess

    from medseg_gui.core.tools import fit_probe
    from medseg_gui.core.config import RunConfig

    seen = {}

    def fake_run(cmd, **kwargs):
        seen.update(kwargs["env"])
        return subprocess.CompletedProcess(cmd, 0, stdout='PROBE {"batch": 2, "fits": true}', stderr="")

    monkeypatch.setattr(fit_probe.subprocess, "run", fake_run)
    fit_probe.run_child(RunConfig(), 2, gpu_uuid="GPU-1234")
    assert seen[hw.VISIBLE_ENV] == "GPU-1234"


def test_train_gpus_flag_sets_the_field_and_the_count(tmp_path):
    from medseg_gui.cli import build_parser
    from medseg_gui.cli.train_cmd import build_config
    from medseg_gui.core import config as cfg
    path = cfg.save(cfg.RunConfig(), tmp_path / "c.toml")
    args = build_parser().parse_args(["train", "--config", str(path), "--gpus", "0, GPU-ab12"])
    config = build_config(args)
    assert config.training.gpus == ["0", "GPU-ab12"] and config.training.devices == 2
    # the GUI's child process reads the same field back from the config file it is given
    assert cfg.load(cfg.save(config, tmp_path / "child.toml")).training.gpus == ["0", "GPU-ab12"]
    named = cfg.RunConfig()
    named.training.gpus = ["GPU-ab12"]  # e.g. --demo's recommended card
    path2 = cfg.save(named, tmp_path / "named.toml")
    args = build_parser().parse_args(["train", "--config", str(path2), "--devices", "2"])
    assert build_config(args).training.gpus == [] and build_config(args).training.devices == 2
    args = build_parser().parse_args(["train", "--config", str(path2), "--devices", "1"])
    assert build_config(args).training.gpus == ["GPU-ab12"]
    for bad in (["--gpus", ","], ["--gpus", "0,1", "--devices", "3"]):
        with pytest.raises(cfg.ConfigError, match="training.gpus"):
            build_config(build_parser().parse_args(["train", "--config", str(path), *bad]))


def test_train_cli_with_a_bad_gpus_flag_exits_2(tmp_path, capsys):
    from medseg_gui.cli import main
    from medseg_gui.core import config as cfg
    path = cfg.save(cfg.RunConfig(), tmp_path / "c.toml")
    assert main(["train", "--config", str(path), "--gpus", ","]) == 2
    assert "training.gpus" in capsys.readouterr().err


def test_processes_started_by_an_external_launcher_agree_on_the_cards():
    snap = Machine(two_h200(busy0=True)).probe()
    plan = gi.plan_training_devices(snap, [], 1, launched_externally=True)
    assert plan.ordinals == [0] and "external launcher" in plan.note  # not "most free": ranks would disagree
    assert gi.plan_training_devices(snap, ["1"], 1, launched_externally=True).ordinals == [1]


# ---- the speed estimate speaks of the card that trains ----------------------------------------------

def test_training_gpu_is_the_configured_card_not_the_most_free():
    m = Machine(two_h200(busy0=True))
    snap = m.probe()
    assert gi.training_gpu(snap, ["0"], 1).index == 0  # configured: the busy card, as the session trains
    assert gi.training_gpu(snap, [m.uuid(0)], 1).index == 0
    assert gi.training_gpu(snap, [], 1).index == 1  # nothing configured: the card the session would pick
    with pytest.raises(gi.GpuSelectionError):
        gi.training_gpu(snap, ["7"], 1)
    m.env("1")
    assert gi.training_gpu(m.probe(), ["0"], 1).index == 1  # CUDA 0 is nvidia-smi's 1 here


def _estimate_config(tmp_path, gpus):
    from medseg_gui.core import config as cfg
    config = cfg.RunConfig()
    config.training.accelerator, config.training.gpus = "gpu", gpus
    path = tmp_path / "c.toml"
    cfg.save(config, path)
    return path


def test_cli_benchmark_estimate_uses_the_configured_card(fake_machine, tmp_path, monkeypatch, capsys):
    from medseg_gui.cli import main
    from medseg_gui.core.tools import benchmark
    seen = []
    monkeypatch.setattr(benchmark, "known_speed", lambda config, gpu, *a: seen.append(gpu) or None)
    assert main(["benchmark", "--config", str(_estimate_config(tmp_path, ["0"])), "--estimate"]) == 0
    assert seen[-1].index == 0 and seen[-1].uuid == fake_machine.uuid(0)  # not GPU 1, the most free
    assert main(["benchmark", "--config", str(_estimate_config(tmp_path, ["7"])), "--estimate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "there is no GPU 7" in err[0]


def test_gpu_choice_fix_has_no_markdown_for_the_gui():
    from medseg_gui.core import config as cfg
    from medseg_gui.core.tools.preflight import PreflightFacts, check_gpu_choice

    config = cfg.RunConfig()
    config.training.accelerator, config.training.gpus = "gpu", ["7"]
    item = check_gpu_choice(PreflightFacts(config=config, gpu_error="there is no GPU 7: GPU 0, GPU 1"))
    assert item.status == "fail" and "Hardware page" in item.fix
    assert "`" not in item.fix and "`" not in item.detail
