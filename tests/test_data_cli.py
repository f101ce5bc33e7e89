"""`medseg data check` / `medseg data demo` exit codes and output."""

from __future__ import annotations

import json

import numpy as np

from data_helpers import make_split_dataset, write_png
from medseg_gui.cli import main


def test_check_ok_exit_0(tmp_path, capsys):
    make_split_dataset(tmp_path, n_train=3, n_valid=1)
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "OK: training can go ahead" in out and "stomach" in out


def test_check_json_and_bad_dataset_exit_1(tmp_path, capsys):
    make_split_dataset(tmp_path, n_train=3, n_valid=1)
    for mask in tmp_path.rglob("masks/*.png"):
        write_png(mask, np.full((32, 32), 7, np.uint8))
    assert main(["data", "check", str(tmp_path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["can_train"] is False and {p["kind"] for p in data["problems"]} == {"mask_values"}
    assert all(p["path"].endswith(".png") for p in data["problems"])
    # with enough classes the same folder is fine
    assert main(["data", "check", str(tmp_path), "--num-classes", "8"]) == 0


def test_check_not_a_dataset_exit_1(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "hint:" in err


def test_check_rejects_bad_arguments(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path), "--num-classes", "1"]) == 2
    assert "--num-classes" in capsys.readouterr().err


def test_demo_writes_and_refuses_to_overwrite(tmp_path, capsys):
    dst = tmp_path / "demo"
    assert main(["data", "demo", str(dst), "--n", "10", "--size", "48", "--seed", "2"]) == 0
    assert "wrote 8 training and 2 validation slices (48 px)" in capsys.readouterr().out
    assert main(["data", "check", str(dst)]) == 0
    capsys.readouterr()
    assert main(["data", "demo", str(dst), "--n", "10"]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    assert "check" in capsys.readouterr().out
