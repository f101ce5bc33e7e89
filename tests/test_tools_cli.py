"""`medseg lr-find`, `medseg benchmark`, `medseg preflight` in-process, on a tiny generated dataset."""

from __future__ import annotations

import json

import pytest

from engine_helpers import tiny_config
from medseg_gui.cli import main
from medseg_gui.core import config as cfg
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_config_file(tmp_path):
    from medseg_gui.core.data.demo import generate_demo

    config = tiny_config(tmp_path, epochs=3)
    cfg.set_num_classes(config, 4)
    config.dataset.path = str(generate_demo(tmp_path / "data", n=16, size=64))
    config.dataset.augment_shift_scale_rotate = False
    path = tmp_path / "run.toml"
    cfg.save(config, path)
    return path


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_preflight_exits_1_when_an_item_fails(tmp_path, capsys):
    config = cfg.RunConfig()
    config.dataset.path = str(tmp_path / "nowhere")
    config.training.accelerator = "cpu"
    path = tmp_path / "c.toml"
    cfg.save(config, path)
    assert main(["preflight", "--config", str(path), "--json"]) == 1
    data = _json(capsys)
    dataset = next(i for i in data["items"] if i["id"] == "dataset")
    assert data["ok"] is False and dataset["status"] == "fail" and "does not exist" in dataset["detail"]
    assert "medseg data import" in dataset["fix"]
    assert main(["preflight", "--config", str(path)]) == 1
    text = capsys.readouterr().out
    assert "[FAIL] Dataset present and valid" in text and "fix: " in text


def test_preflight_passes_on_a_good_dataset(tiny_config_file, capsys):
    assert main(["preflight", "--config", str(tiny_config_file)]) == 0
    assert "Ready to train." in capsys.readouterr().out


def test_config_errors_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nbatch_size = 'big'\n")
    assert main(["benchmark", "--config", str(bad)]) == 2
    assert "training.batch_size" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_json_gives_a_time_estimate_for_the_dataset(tiny_config_file, capsys):
    assert main(["benchmark", "--config", str(tiny_config_file), "--steps", "2", "--warmup", "1", "--json"]) == 0
    data = _json(capsys)
    assert data["kind"] == "measured" and data["images_per_s"] > 0
    assert data["time"]["train_images"] > 0 and data["time"]["epochs"] == 3
    assert data["time"]["run_s"] == pytest.approx(3 * data["time"]["epoch_s"])
    # the measurement is now what --estimate shows for this config
    assert main(["benchmark", "--config", str(tiny_config_file), "--estimate"]) == 0
    assert capsys.readouterr().out.startswith("measured:")


@pytest.mark.slow
def test_lr_find_json_and_save(tiny_config_file, tmp_path, capsys):
    assert main(["lr-find", "--config", str(tiny_config_file), "--steps", "5", "--json"]) == 0
    few = _json(capsys)
    assert few["suggestion"] is None and few["message"].startswith("only 5 batches")
    out = tmp_path / "tuned.toml"
    assert main(["lr-find", "--config", str(tiny_config_file), "--steps", "16", "--save", str(out)]) == 0
    text = capsys.readouterr().out
    assert "suggested learning rate" in text
    suggested = cfg.load(out).training.lr
    assert suggested != cfg.load(tiny_config_file).training.lr and f"{suggested:.2e}" in text
