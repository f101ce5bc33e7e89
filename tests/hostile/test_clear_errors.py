"""Hostile or mistaken configs, weights, devices and launches get one clear line, never a traceback.

Covers: ``config validate`` listing type and range problems together, NaN/inf in every float setting;
fp16 safetensors weights (converted, and said); a bundle's impossible ``image_size``; weight-shape
mismatches naming the tensors; NaN weights warned about; ``--sample-masks -3``; ``--device gpu|cuda``
and ``--accelerator gpu`` without CUDA; ``recommend --vram-gb inf|nan``; ``medseg-gui`` without a
display or on a missing dataset; the CPU thread plan that keeps CPU training from collapsing under load;
the screenshot tests writing only into temp folders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg_gui.cli import main
from medseg_gui.core import config as cfg
from viewer_helpers import ramp_image, tiny_bundle, write_png

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("clear_errors_models"))


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), err


def _copy_bundle(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    return dst


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    save_file(change(dict(state)), str(folder / "model.safetensors"), metadata={"format": "pt"})


# ---- config validate: every problem at once -------------------------------------------------------------
def test_config_validate_lists_type_and_range_problems_together_and_refuses_nan_and_inf(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[training]\nbatch_size = "eight"\nepochs = 0\nlr = nan\nweight_decay = inf\n'
                   '[dataset]\nimage_size = 5\nval_fraction = -inf\nnum_classes = "four"\n', encoding="utf-8")
    assert main(["config", "validate", str(bad), "--json"]) == 1
    problems = {p["field"]: p["reason"] for p in json.loads(capsys.readouterr().out)["problems"]}
    assert "whole number" in problems["training.batch_size"] and "whole number" in problems["dataset.num_classes"]
    assert "below the minimum" in problems["training.epochs"]  # a range problem beside the type problems
    assert "below the minimum" in problems["dataset.image_size"]
    for key in ("training.lr", "training.weight_decay", "dataset.val_fraction"):
        assert "finite" in problems[key], problems
    # no complaint about defaults the user never chose (class names vs the unreadable class count)
    assert "dataset.class_names" not in problems and "dataset.class_colors" not in problems
    for reader in (cfg.load, cfg.load_and_validate):  # what train and the app read: the same full list
        with pytest.raises(cfg.ConfigError) as err:
            reader(bad)
        assert len(err.value.problems) == len(problems)

    for section in cfg.SECTIONS:  # every float setting refuses NaN and infinity
        for f in dataclasses.fields(cfg.SECTIONS[section]):
            if str(f.type) != "float":
                continue
            for value in (float("nan"), float("inf"), float("-inf")):
                config = cfg.RunConfig()
                setattr(getattr(config, section), f.name, value)
                fields = [p.field for p in cfg.validate(config)]
                assert fields == [f"{section}.{f.name}"], (f.name, value, fields)


# ---- weights ------------------------------------------------------------------------------------------------
def test_fp16_weights_are_converted_to_float32_and_said(tmp_path, bundle, capsys):
    import torch

    from medseg_gui.core.engine.inference import Predictor

    half = _copy_bundle(bundle, tmp_path / "half")
    _rewrite_weights(half, lambda s: {k: v.half() if v.is_floating_point() else v for k, v in s.items()})
    hf = json.loads((half / "config.json").read_text())
    hf["dtype"] = "float16"  # as a model saved after model.half() declares itself
    (half / "config.json").write_text(json.dumps(hf))
    predictor = Predictor.from_path(half, "cpu")
    assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}
    assert any("float16" in w and "float32" in w for w in predictor.info.warnings), predictor.info.warnings
    labels = predictor.predict_volume(np.zeros((1, 64, 64), np.uint8)).labels
    assert labels.shape == (1, 64, 64)

    image = write_png(tmp_path / "in" / "a.png", ramp_image(64))
    assert main(["predict", str(half), str(image), "--out", str(tmp_path / "out")]) == 0
    assert "converted to float32" in capsys.readouterr().err


def test_viewer_banner_shows_what_loading_the_model_found(qtbot, tmp_path, bundle):
    """fp16 weights converted and NaN weights are said in the Viewer's banner, not only on the command line."""
    pytest.importorskip("pytestqt")
    import torch

    from medseg_gui.gui.viewer.viewer_widget import ViewerWidget

    viewer = ViewerWidget()
    qtbot.addWidget(viewer)
    viewer.show()
    try:
        with qtbot.waitSignal(viewer.model_loaded, timeout=60_000):
            viewer.load_model(bundle)
        assert not viewer.banner.isVisible()  # a clean model: nothing to say
        bad = _copy_bundle(bundle, tmp_path / "nan")

        def poison(state):
            name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)
            state[name] = torch.full_like(state[name], float("nan"))
            return state
        _rewrite_weights(bad, poison)
        with qtbot.waitSignal(viewer.model_loaded, timeout=60_000):
            viewer.load_model(bad)
        text = viewer.banner.label.text()
        assert viewer.banner.isVisible() and viewer.banner.label.property("state") == "bad"
        assert "loaded with a warning" in text and "NaN" in text, text
    finally:
        viewer.shutdown()


@pytest.mark.parametrize("size", [0, -5, 100_000])
def test_impossible_bundle_image_size_is_one_clear_line(tmp_path, bundle, capsys, size):
    from medseg_gui.core.engine.bundle import BundleError, read_bundle_info

    broken = _copy_bundle(bundle, tmp_path / "b")
    meta = json.loads((broken / "medseg.json").read_text())
    meta["image_size"] = size
    (broken / "medseg.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=rf"medseg.json: image_size {size} is impossible"):
        read_bundle_info(broken)
    image = write_png(tmp_path / "a.png", ramp_image(64))
    assert main(["predict", str(broken), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "image_size" in err and "medseg.json" in err


def test_weight_shape_mismatch_names_the_first_tensors(tmp_path, bundle):
    import torch

    from medseg_gui.core.engine.inference import ModelLoadError, load_model

    wrong = _copy_bundle(bundle, tmp_path / "wrong")
    name = "decode_head.classifier.weight"

    def grow(state):
        t = state[name]
        state[name] = torch.zeros((t.shape[0] + 1, *t.shape[1:]))
        return state

    from safetensors.torch import load_file

    expected = tuple(load_file(str(wrong / "model.safetensors"))[name].shape)
    _rewrite_weights(wrong, grow)
    found = (expected[0] + 1, *expected[1:])
    shape = lambda s: "(" + ", ".join(map(str, s)) + ")"  # noqa: E731
    with pytest.raises(ModelLoadError) as err:
        load_model(wrong, "cpu")
    text = str(err.value)
    assert name in text and f"expected {shape(expected)}, found {shape(found)}" in text, text
    assert "\n" not in text and "ignore_mismatched_sizes" not in text

    shutil.copy(wrong / "model.safetensors", wrong / "best.safetensors")  # the named-file path, too
    with pytest.raises(ModelLoadError) as err:
        load_model(wrong / "best.safetensors", "cpu")
    assert name in str(err.value) and f"found {shape(found)}" in str(err.value)


def test_nan_weights_load_with_a_warning(tmp_path, bundle, capsys):
    from medseg_gui.core.engine.inference import load_model

    nan = _copy_bundle(bundle, tmp_path / "nan")
    name = "decode_head.classifier.bias"

    def poison(state):
        state[name] = state[name].clone().fill_(float("nan"))
        return state

    _rewrite_weights(nan, poison)
    _, info = load_model(nan, "cpu")
    assert any("NaN" in w and name in w for w in info.warnings), info.warnings
    _, clean = load_model(bundle, "cpu")
    assert clean.warnings == []
    image = write_png(tmp_path / "a.png", ramp_image(64))
    main(["predict", str(nan), str(image), "--out", str(tmp_path / "out")])
    assert f"warning: {nan / 'model.safetensors'}: 1 weight tensor(s) hold NaN" in capsys.readouterr().err


# ---- command-line numbers and devices ---------------------------------------------------------------------
def test_sample_masks_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", "demo", "--sample-masks", "-3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--sample-masks: -3 must be 1 or more" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_recommend_refuses_impossible_vram(value, capsys):
    assert main(["recommend", "--vram-gb", value]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "--vram-gb" in err


@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:0", "tpu"])
def test_predict_on_a_missing_gpu_is_one_line_exit_2(tmp_path, bundle, capsys, device):
    import torch

    if torch.cuda.is_available():  # pragma: no cover — the suite hides GPUs (CUDA_VISIBLE_DEVICES="")
        pytest.skip("a CUDA GPU is visible")
    image = write_png(tmp_path / "a.png", ramp_image(64))
    assert main(["predict", str(bundle), str(image), "--out", str(tmp_path / "out"), "--device", device]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert f"--device {device}" in err or f"'{device}'" in err
    assert not (tmp_path / "out").exists()


def test_train_with_accelerator_gpu_without_cuda_is_one_line_and_makes_no_folder(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a CUDA GPU is visible")
    run_dir = tmp_path / "run"
    code = main(["train", "--demo", "--accelerator", "gpu", "--epochs", "1", "--run-dir", str(run_dir),
                 "--output", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "accelerator gpu" in err and "cpu" in err
    assert not run_dir.exists() and not (tmp_path / "runs").exists()


def test_device_rule_names_the_missing_gpu_number(monkeypatch):
    import torch

    from medseg_gui.core.planning.precision import DeviceError, resolve_accelerator, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("gpu") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_accelerator("gpu") == "gpu" and resolve_accelerator("auto") == "gpu"
    with pytest.raises(DeviceError, match="has 2 CUDA GPU"):
        resolve_device("cuda:3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="accelerator gpu"):
        resolve_accelerator("gpu")
    assert resolve_accelerator("auto") == "cpu" and resolve_device(None) == "cpu"


# ---- the desktop app's launch ------------------------------------------------------------------------------
def _launch_gui(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import sys; from medseg_gui.gui.app import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display rule applies on Linux")
def test_gui_without_a_display_says_how_to_run_it(tmp_path):
    from medseg_gui.gui.app import display_problem

    assert display_problem({}, "linux") and "QT_QPA_PLATFORM=offscreen" in display_problem({}, "linux")
    assert display_problem({"DISPLAY": ":0"}, "linux") == ""
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") == ""
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") == ""
    assert display_problem({}, "win32") == "" and display_problem({}, "darwin") == ""

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["MEDSEG_HOME"] = str(tmp_path)
    proc = _launch_gui(["--no-wizard"], env)
    assert proc.returncode == 2, proc.stderr  # not SIGABRT (-6)
    _one_line_error(proc.stderr)
    assert "display" in proc.stderr and "medseg --help" in proc.stderr and "xcb" not in proc.stderr


def test_gui_on_a_missing_dataset_reports_it(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDSEG_HOME=str(tmp_path))
    missing = tmp_path / "nonexistent"
    proc = _launch_gui([str(missing), "--no-wizard"], env)
    assert proc.returncode == 2, proc.stderr
    _one_line_error(proc.stderr)
    assert str(missing) in proc.stderr and "does not exist" in proc.stderr
    a_file = write_png(tmp_path / "a.png", ramp_image(8))
    from medseg_gui.gui.app import dataset_problem

    assert "is not a folder" in dataset_problem(str(a_file))
    assert dataset_problem("demo") == "" and dataset_problem(None) == "" and dataset_problem(str(tmp_path)) == ""


# ---- CPU training on a busy machine ---------------------------------------------------------------------------
def test_cpu_thread_plan_leaves_busy_cores_alone():
    from medseg_gui.core.cpu_threads import plan_cpu_threads, usable_cpus

    idle = plan_cpu_threads(4, usable=16, busy=0.2, environ={})
    assert idle.threads + idle.loader_workers <= 16 and idle.threads >= 14 and idle.interop_threads == 1
    loaded = plan_cpu_threads(4, usable=16, busy=11.7, environ={})  # 12 CPUs busy with other work
    assert loaded.threads + loaded.loader_workers <= 4 and loaded.threads >= 1
    swamped = plan_cpu_threads(4, usable=2, busy=7.0, environ={})  # more work than CPUs
    assert (swamped.threads, swamped.loader_workers) == (1, 0)
    assert plan_cpu_threads(8, usable=16, busy=0, environ={}).loader_workers == 1  # CPU steps are the bottleneck
    assert plan_cpu_threads(0, usable=16, busy=0, environ={}).loader_workers == 0  # never more than asked
    ddp = plan_cpu_threads(0, usable=16, busy=0, environ={}, processes=4)
    assert ddp.threads == 4  # shared among the training processes
    assert plan_cpu_threads(4, usable=16, busy=12, environ={"OMP_NUM_THREADS": "3"}).threads == 3  # the user's
    assert plan_cpu_threads(4, usable=16, busy=12, environ={"MEDSEG_CPU_THREADS": "5"}).why == \
        "set by MEDSEG_CPU_THREADS"
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= usable_cpus() <= allowed
    assert plan_cpu_threads(4, busy=0, environ={}).threads <= allowed


def test_container_cpu_quota_counts_as_the_usable_cpus(tmp_path):
    from medseg_gui.core.cpu_threads import cgroup_cpu_limit

    assert cgroup_cpu_limit(str(tmp_path)) is None  # no cgroup files: unlimited
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(str(tmp_path)) is None
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # docker --cpus=2.5
    assert cgroup_cpu_limit(str(tmp_path)) == 2.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(str(v1)) == 2.0


# ---- the test command leaves the repository alone -----------------------------------------------------------
def test_screenshot_tests_write_only_into_temp_folders():
    sources = sorted((ROOT / "tests").glob("test_*screenshot*.py"))
    assert len(sources) >= 3
    for source in sources + [ROOT / "tests" / "screenshot_scenes.py"]:
        text = source.read_text(encoding="utf-8")
        assert '"docs"' not in text and "docs/screenshots\"" not in text, source
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "refresh_screenshots.py"), "no-such-scene"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown scene" in proc.stderr
