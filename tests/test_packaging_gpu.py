"""The GPU build of the bundle: the spec's choices (packaging/bundle_options.py) and the benchmark that builds
the CUDA command-line bundle on the lent GPU machine (benchmarks/bench_frozen_gpu.py).

The benchmark's real run needs a GPU and ~4 GB of CUDA torch, so here it runs against a fake frozen
``medseg`` that answers like the real one: what is tested is that the benchmark reads the run folder
right (device, graph captured or fallen back, images/s) and always writes its JSON with the failure named.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest

from medseg_gui.core.events import (EpochMetrics, LogMessage, PhaseChanged, RunFailed, RunFinished, RunStarted,
                                    StepMetrics, to_json)

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look the module up while it executes
    spec.loader.exec_module(module)
    return module


options = load(ROOT / "packaging" / "bundle_options.py", "bundle_options")
bench = load(ROOT / "benchmarks" / "bench_frozen_gpu.py", "bench_frozen_gpu")


# ----- the spec's choices -------------------------------------------------------------------------
def test_bundle_kind_follows_pyside_unless_told():
    assert options.bundle_kind({}, has_pyside=True) == "full"
    assert options.bundle_kind({}, has_pyside=False) == "cli"
    assert options.bundle_kind({"MEDSEG_BUNDLE": " CLI "}, has_pyside=True) == "cli"
    assert options.bundle_kind({"MEDSEG_BUNDLE": "full"}, has_pyside=True) == "full"


@pytest.mark.parametrize("value,words", [("gui", "use 'full'"), ("full", "PySide6 is not installed")])
def test_bundle_kind_refuses_what_it_cannot_build(value, words):
    with pytest.raises(options.BundleChoiceError, match=words):
        options.bundle_kind({"MEDSEG_BUNDLE": value}, has_pyside=False)


def test_a_command_line_bundle_leaves_out_the_desktop_app_only():
    for name in ("medseg_gui.gui", "medseg_gui.gui.app", "PySide6.QtCore", "pyqtgraph", "shiboken6"):
        assert options.is_gui_module(name), name
    for name in ("medseg_gui.cli", "medseg_gui.core.engine.session", "medseg_gui.guide", "torch"):
        assert not options.is_gui_module(name), name


def test_every_nvidia_library_keeps_its_folder():
    files = [("/sp/nvidia/cu13/lib/libcublas.so.13", "nvidia/cu13/lib/libcublas.so.13"),
             ("/sp/nvidia/cudnn/lib/libcudnn_ops.so.9", "nvidia/cudnn/lib/libcudnn_ops.so.9"),
             ("/sp/nvidia/cu13/lib/libnvrtc-builtins.so", "nvidia/cu13/lib/libnvrtc-builtins.so"),
             ("/sp/nvidia/cu13/include/cublas.h", "nvidia/cu13/include/cublas.h"),
             ("/sp/nvidia/cu13/__init__.py", "nvidia/cu13/__init__.py"),
             ("/sp/nvidia/cu13/lib/stubs/libcuda.so", "nvidia/cu13/lib/stubs/libcuda.so"),
             ("/sp/nvidia/cu13/lib/libcuda.so.1", "nvidia/cu13/lib/libcuda.so.1"),  # the driver's own, never ours
             ("/sp/nvidia/cu13/lib/libcublas.so.13", "nvidia/cu13/lib/libcublas.so.13")]  # listed twice
    assert options.library_destinations(files) == [
        ("/sp/nvidia/cu13/lib/libcublas.so.13", "nvidia/cu13/lib"),
        ("/sp/nvidia/cudnn/lib/libcudnn_ops.so.9", "nvidia/cudnn/lib"),
        ("/sp/nvidia/cu13/lib/libnvrtc-builtins.so", "nvidia/cu13/lib")]


def test_cuda_13_libraries_are_found_through_the_toolkit_extras_torch_asks_for():
    """torch for CUDA 13 names cuDNN & co. directly and cuBLAS, the runtime, NVRTC... through
    cuda-toolkit[...] (seen on the GPU machine: the direct names alone missed them)."""
    metadata = {
        "torch": ['cuda-toolkit[cublas,cudart,nvrtc]==13.0.2; platform_system == "Linux"',
                  'nvidia-cudnn-cu13==9.15.1.9; platform_system == "Linux"',
                  'nvidia-nccl-cu13==2.28.9; python_version < "3"',  # a marker that never holds
                  "sympy>=1.13.3", 'opt-einsum>=3.3; extra == "opt-einsum"'],
        "cuda-toolkit": ['nvidia-cublas==13.1.0.3; extra == "cublas"', 'nvidia-cuda-runtime==13.0.96; extra == "cudart"',
                         'nvidia-cuda-nvrtc==13.0.88; extra == "nvrtc"', 'nvidia-cufft==12.0.0.61; extra == "cufft"',
                         'nvidia-cuda-nvrtc==13.0.88; extra == "all"'],
    }
    names = options.torch_nvidia_requirements(metadata.get)
    assert names == ["nvidia-cublas", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cudnn-cu13"]
    assert options.torch_nvidia_requirements(lambda name: None) == []  # no torch at all


def test_the_torch_build_is_read_without_importing_torch():
    import torch

    assert options.torch_cuda_version() == torch.version.cuda
    if torch.version.cuda is None:  # a CPU torch needs no CUDA libraries in its bundle
        assert options.nvidia_binaries() == []


def test_the_spec_builds_the_command_line_alone_when_asked():
    """The spec's own text: the cli kind drops the desktop launcher and Qt; CUDA libraries are added."""
    spec = (ROOT / "packaging" / "medseg-gui.spec").read_text(encoding="utf-8")
    assert "BUNDLE_KIND = bundle_kind()" in spec and "\nBUNDLE = " not in spec  # BUNDLE is PyInstaller's
    assert 'del LAUNCHERS["medseg-gui"]' in spec
    assert "binaries=binaries," in spec and "nvidia_binaries() if CUDA" in spec
    for unused in ("jaxlib", "llvmlite", "pyarrow", "cupy"):  # the GPU image's extras: 0.8 GB of its bundle
        assert f'"{unused}"' in spec


# ----- the benchmark's reading of a run -----------------------------------------------------------
def events_file(path: Path, events) -> Path:
    path.write_text("".join(to_json(e) + "\n" for e in events) + '{"type": "RunFin', encoding="utf-8")
    return path


def gpu_run(graph_message: str) -> list:
    config = {"training": {"variant": "b2", "batch_size": 32, "precision": "bf16-mixed", "cuda_graphs": "auto",
                           "compile": "auto", "num_workers": 8, "epochs": 2}, "dataset": {"image_size": 256}}
    return [RunStarted(run_dir="r", config=config, device="NVIDIA H200", epochs=2, steps_per_epoch=10),
            PhaseChanged(phase="compiling", message="capturing the training step as a CUDA graph after 3 steps"),
            PhaseChanged(phase="training", message=graph_message),
            StepMetrics(step=5, epoch=0, loss=1.0, lr=1e-4, images_per_s=100.0),
            StepMetrics(step=9, epoch=0, loss=0.9, lr=1e-4, images_per_s=900.0),
            StepMetrics(step=19, epoch=1, loss=0.8, lr=1e-4, images_per_s=1000.0),
            EpochMetrics(epoch=1, step=19, train_loss=0.8, val_loss=0.7, val_f1=0.5, epoch_time_s=1.5),
            LogMessage(level="warning", message="something to know"),
            RunFinished(run_dir="r", stopped_early=False, steps_done=20, duration_s=12.0)]


def test_a_captured_graph_on_the_gpu_passes(tmp_path):
    summary = bench.summarize_training(bench.read_events(events_file(tmp_path / "e.jsonl",
                                                                     gpu_run("CUDA graph captured in 2.1 s"))))
    assert summary["device"] == "NVIDIA H200" and summary["graph"] == "captured"
    assert summary["images_per_s"] == 950.0 and summary["images_per_s_max"] == 1000.0
    assert summary["config"]["variant"] == "b2" and summary["config"]["image_size"] == 256
    assert summary["finished"] and summary["warnings"] == ["something to know"]
    assert bench.training_problems(summary, expect_gpu=True) == []


def test_a_fallback_a_cpu_run_and_a_failure_are_named(tmp_path):
    fell = bench.summarize_training(bench.read_events(events_file(
        tmp_path / "a.jsonl", gpu_run("warmed up in 3 s (CUDA graph capture failed: x: running without it)"))))
    assert fell["graph"] == "fell back"
    assert any("not captured" in p for p in bench.training_problems(fell, expect_gpu=True))
    assert bench.training_problems(fell, expect_gpu=False) == []

    cpu = bench.summarize_training([
        {"type": "RunStarted", "device": "cpu", "config": {}},
        {"type": "LogMessage", "level": "warning", "message": "CUDA graphs not used: no CUDA GPU"}])
    problems = bench.training_problems(cpu, expect_gpu=True)
    assert any("did not finish" in p for p in problems) and any("not on the GPU" in p for p in problems)
    assert any("not attempted: CUDA graphs not used: no CUDA GPU" in p for p in problems)

    failed = bench.summarize_training(bench.read_events(events_file(tmp_path / "f.jsonl", [
        RunFailed(run_dir="r", reason="CUDA error: no kernel image", hint="rebuild")])))
    assert "no kernel image rebuild" in bench.training_problems(failed, expect_gpu=False)[0]


def test_only_missing_or_too_old_wheels_are_installed():
    wanted = {"pydicom": "pydicom>=3.0.1", "pillow": "pillow>=10", "altgraph": "altgraph"}
    assert bench.unsatisfied(wanted, {"pydicom": "2.4.4", "pillow": "11.0", "altgraph": "0.17"}) == ["pydicom>=3.0.1"]
    assert bench.unsatisfied(wanted, {}) == list(wanted.values())


def test_the_carried_wheels_match_the_projects_requirements():
    """Every requirement the benchmark installs names the floor pyproject.toml asks for."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floors = {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in project["dependencies"]}
    for name, text in bench.CARRIED_REQUIREMENTS.items():
        if name in floors:
            assert str(Requirement(text).specifier) == floors[name], name


# ----- the benchmark end to end, against a fake frozen medseg -------------------------------------
FAKE_MEDSEG = '''#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
home = Path(os.environ["MEDSEG_HOME"])
if "PYTHONPATH" in os.environ:
    sys.exit("the frozen binary got PYTHONPATH")
if args == ["--version"]:
    print("medseg 0.1.0")
elif args[:1] == ["hardware"]:
    print(json.dumps({{"gpus": [{{"name": "NVIDIA H200"}}], "has_gpu": True}}))
elif args[:1] == ["recommend"]:
    Path(args[args.index("--save") + 1]).write_text('[training]\\ncompile = "auto"\\n[dataset]\\npath = ""\\n')
elif args[:1] == ["train"] and "--config" in args:
    config = Path(args[args.index("--config") + 1]).read_text()
    assert 'compile = "on"' in config and 'path = "demo"' in config, config
    run = Path(args[args.index("--run-dir") + 1])
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text({compiled_events!r})
elif args[:1] == ["train"]:
    if args[args.index("--batch-size") + 1] != "16":  # the demo's own batch: one step an epoch, no graph
        sys.exit("expected --batch-size 16")
    run = Path(args[args.index("--run-dir") + 1])
    run.mkdir(parents=True)
    images = home / "cache" / "demo" / "valid" / "images"
    images.mkdir(parents=True)
    (images / "case1.png").write_bytes(b"png")
    (run / "events.jsonl").write_text({events!r})
    sys.exit({train_rc})
elif args[:1] == ["predict"]:
    inputs = args[2:args.index("--out")]
    print(json.dumps({{"model_info": "SegFormer-b2, 256 px, 3 classes, on cuda:0", "errors": [],
                      "results": [{{"kind": "image", "shape": [256, 256]}} for _ in inputs]}}))
'''


def fake_bundle(tmp_path: Path, graph_message: str, train_rc: int = 0) -> Path:
    exe = tmp_path / "dist" / "medseg-gui" / "medseg"
    exe.parent.mkdir(parents=True)
    (exe.parent / "_internal" / "torch").mkdir(parents=True)
    (exe.parent / "_internal" / "torch" / "libtorch.so").write_bytes(b"x" * 4096)
    events = "".join(to_json(e) + "\n" for e in gpu_run(graph_message))
    compiled = "".join(to_json(e) + "\n" for e in gpu_run("compiled in 61 s"))
    exe.write_text(textwrap.dedent(FAKE_MEDSEG.format(python=sys.executable, events=events, train_rc=train_rc,
                                                      compiled_events=compiled)), encoding="utf-8")
    exe.chmod(0o755)
    return tmp_path / "dist"


def run_bench(tmp_path: Path, dist: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "results" / "bench.json"
    rc = bench.main(["--no-install", "--no-build", "--dist", str(dist), "--out", str(out), "--budget-s", "300", *extra])
    return rc, json.loads(out.read_text(encoding="utf-8"))


def test_the_benchmark_measures_a_frozen_gpu_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    rc, result = run_bench(tmp_path, fake_bundle(tmp_path, "CUDA graph captured in 2.1 s"), "--try-compile")
    assert rc == 0, result["problems"]
    assert result["ok"] and result["problems"] == []
    phases = result["phases"]
    assert phases["size"]["bytes"] >= 4096 and "torch" in phases["size"]["largest_mib"]
    assert len(phases["startup_version"]["runs_s"]) == 3 and phases["startup_version"]["median_s"] > 0
    assert phases["startup_hardware"]["gpus"] == ["NVIDIA H200"]
    assert phases["train"]["device"] == "NVIDIA H200" and phases["train"]["graph"] == "captured"
    assert phases["train"]["images_per_s"] == 950.0
    assert phases["predict"]["rc"] == 0 and len(phases["predict"]["results"]) == 2  # a PNG and a DICOM file
    assert (tmp_path / "results" / "bench_logs" / "train.log").is_file()
    probe = phases["compile_probe"]  # the forced-compile run: its config was rewritten, its result read back
    assert probe["rc"] == 0 and probe["compiled"] == "training: compiled in 61 s" and probe["finished"]


def test_the_benchmark_records_a_fallback_and_a_failed_run(tmp_path):
    rc, result = run_bench(tmp_path, fake_bundle(tmp_path, "warmed up in 3 s (CUDA graph x: running without it)",
                                                 train_rc=1))
    assert rc == 1 and not result["ok"]
    assert any("not captured" in p for p in result["problems"])
    assert result["phases"]["train"]["rc"] == 1 and result["phases"]["train"]["graph"] == "fell back"


def test_the_benchmark_writes_its_json_when_there_is_no_bundle(tmp_path):
    rc, result = run_bench(tmp_path, tmp_path / "nowhere")
    assert rc == 1 and result["problems"] == [f"no frozen command line at {tmp_path / 'nowhere/medseg-gui/medseg'}"]
