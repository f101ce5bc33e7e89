"""Core helpers behind the Configuration page and the session: problems only this computer can tell,
labels instead of keys, plurals, the configuration kept between sessions, the app's folders."""

from __future__ import annotations

from pathlib import Path

from medseg_gui.core import config as cfg
from medseg_gui.core.config_checks import dataset_path_problem, describe_problem, field_label, problems_before_start
from medseg_gui.core.last_config import load_last, save_last
from medseg_gui.core.paths import absolute_output_dir, app_home, default_output_dir, last_config_file
from medseg_gui.core.words import plural


def test_dataset_folder_must_exist_and_the_fix_names_the_app(tmp_path):
    assert dataset_path_problem("demo") is None and dataset_path_problem("Demo") is None
    assert dataset_path_problem("") is None  # validate() already says "is empty"
    assert dataset_path_problem(str(tmp_path)) is None
    missing = dataset_path_problem(str(tmp_path / "nope"))
    assert missing.field == "dataset.path" and "not found" in missing.reason
    assert "Browse…" in missing.reason and "New training wizard" in missing.reason and "medseg" not in missing.reason
    (tmp_path / "f.txt").write_text("x")
    assert "not a folder" in dataset_path_problem(str(tmp_path / "f.txt")).reason


def test_every_problem_at_once_in_the_forms_words(tmp_path):
    config = cfg.RunConfig()
    config.dataset.path = str(tmp_path / "nope")
    config.training.epochs = 0
    config.training.batch_size = 0
    problems = problems_before_start(config)
    assert {p.field for p in problems} == {"dataset.path", "training.epochs", "training.batch_size"}
    assert field_label("training.epochs") == "Epochs" and field_label("dataset.path") == "Dataset"
    assert field_label("nonsense.key") == "nonsense.key"
    text = [describe_problem(p) for p in problems]
    assert any(t.startswith("Epochs: 0 is below the minimum 1") for t in text)
    assert not any("training." in t for t in text)


def test_plural():
    assert plural(1, "epoch") == "1 epoch" and plural(5, "epoch") == "5 epochs" and plural(0, "step") == "0 steps"
    assert plural(1, "data-loading worker") == "1 data-loading worker"
    assert plural(2, "data-loading worker") == "2 data-loading workers"
    assert plural(2, "DICOM series") == "2 DICOM series" and plural(3, "class") == "3 classes"


def test_last_configuration_round_trips_atomically_and_a_bad_file_is_kept(_isolated_home):
    assert load_last() == (None, "")  # nothing yet: nothing said
    config = cfg.RunConfig()
    config.training.epochs = 1
    config.dataset.image_size = 128
    assert save_last(config) == last_config_file() == _isolated_home / "last_config.toml"
    restored, message = load_last()
    assert restored.training.epochs == 1 and restored.dataset.image_size == 128 and "Restored" in message
    assert not list(_isolated_home.glob(".last_config.toml.*.tmp"))  # the atomic write left no temp file
    last_config_file().write_text("[training]\nepochs = 'many'\n")
    restored, message = load_last()
    assert restored is None and "could not be read" in message and "unreadable" in message
    assert (_isolated_home / "last_config.toml.unreadable").read_text() == "[training]\nepochs = 'many'\n"
    assert not last_config_file().exists()  # moved aside, so the next save cannot erase what the user had


def test_runs_default_to_the_app_data_folder_not_the_launch_directory(_isolated_home):
    assert app_home() == _isolated_home
    assert default_output_dir() == _isolated_home / "runs"
    assert absolute_output_dir("runs") == str(_isolated_home / "runs")
    assert absolute_output_dir("/data/runs") == "/data/runs"
    assert Path(absolute_output_dir("~/x")).is_absolute()
