"""Hostile or mistaken destinations: export, predict, imports, the demo and every --save never lose work.

Covers: ``export --force`` onto the run, a folder holding it, another run's bundle or foreign folders
(refused, nothing touched) and onto an earlier export (replaced); colliding prediction outputs; an
existing ground truth in ``--out`` (kept unless ``--overwrite``); colliding import names (both kept,
counts = files); ``--save`` onto an existing file; read-only/full destinations (one line, exit 2,
no traceback); two imports into one folder.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg_gui.cli import main
from medseg_gui.core.output_guard import OutputRefused, exclusive_lock

from data_helpers import make_pair, tree_digest
from viewer_helpers import ramp_image, tiny_bundle, write_png


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("hostile_models"))


def _one_line_error(err: str) -> None:
    """A refusal is our own sentence on stderr, never a Python traceback."""
    assert "Traceback" not in err
    assert err.startswith("error: "), err


def _run_folder(root: Path, bundle: Path, name: str = "r1") -> Path:
    import shutil

    from medseg_gui.core import config as cfg
    from viewer_helpers import tiny_run_config

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    cfg.save(tiny_run_config(), run / "config.toml")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weeks of GPU time")
    shutil.copytree(bundle, run / "bundle")
    return run


def _png_count(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.png"))


# ---- 1. export --force ---------------------------------------------------------------------------------
def test_export_force_never_replaces_the_run_a_folder_holding_it_or_foreign_folders(tmp_path, bundle, capsys):
    runs_dir = tmp_path / "runs"
    run = _run_folder(runs_dir, bundle, "r1")
    other = _run_folder(runs_dir, bundle, "r2")
    foreign = tmp_path / "my_data"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    lookalike = tmp_path / "lookalike"  # a bundle with something of the user's inside
    lookalike.mkdir()
    for f in bundle.iterdir():
        (lookalike / f.name).write_bytes(f.read_bytes())
    (lookalike / "README.txt").write_text("my notes")
    before = {p: tree_digest(p) for p in (runs_dir, foreign, lookalike)}
    for dst in (run, runs_dir, run / "bundle", run / "bundle" / "inner", tmp_path, other / "bundle", other,
                foreign, lookalike):
        code = main(["export", str(run), str(dst), "--force"])
        err = capsys.readouterr().err
        assert code == 2, dst
        _one_line_error(err)
        assert str(dst) in err
    assert {p: tree_digest(p) for p in before} == before

    export = tmp_path / "export"
    assert main(["export", str(run), str(export)]) == 0
    assert main(["export", str(run), str(export)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(run), str(export), "--force"]) == 0  # an earlier export: replaced
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "medseg.json", "model.safetensors"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(run), str(empty)]) == 0  # an empty folder loses nothing


def test_core_bundle_writers_refuse_to_replace_a_foreign_folder(tmp_path, bundle):
    from medseg_gui.core.engine.bundle import copy_bundle, save_bundle
    from viewer_helpers import tiny_model, tiny_run_config

    dataset = tmp_path / "dataset"
    make_pair(dataset / "images", dataset / "masks", "case1")
    before = tree_digest(dataset)
    with pytest.raises(OutputRefused, match="not an earlier model export"):
        copy_bundle(bundle, dataset)
    with pytest.raises(OutputRefused, match="not an earlier model export"):
        save_bundle(tiny_model(), tiny_run_config(), dataset)
    assert tree_digest(dataset) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


# ---- 4. predict ----------------------------------------------------------------------------------------
def test_predict_gives_colliding_inputs_distinct_outputs_and_says_so(tmp_path, bundle, capsys):
    from PIL import Image

    src = tmp_path / "in"
    inputs = [write_png(src / "a" / "x.png", ramp_image()), write_png(src / "b" / "x.png", ramp_image(60, 70)),
              write_png(src / "x.png", ramp_image(50, 40)), src / "x.jpg",
              write_png(src / "é.png", ramp_image()), write_png(src / "è.png", ramp_image()),
              write_png(src / "X.png", ramp_image())]
    Image.fromarray(ramp_image(30, 30)).save(src / "x.jpg")
    out = tmp_path / "out"
    code = main(["predict", str(bundle), *map(str, inputs), "--out", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["errors"]
    masks = [m for r in report["results"] for m in r["masks"]]
    assert len(masks) == len(inputs) == len({m.lower() for m in masks})  # distinct, even case-blind
    assert _png_count(out) == len(inputs)
    assert sum(bool(r["note"]) for r in report["results"]) == 5  # b/x, x.png, x.jpg, è.png, X.png
    shapes = {r["input"]: read_shape(Path(r["masks"][0])) for r in report["results"]}
    assert shapes[str(inputs[1])] == (60, 70) and shapes[str(inputs[3])] == (30, 30)
    # text mode says so too
    out2 = tmp_path / "out2"
    assert main(["predict", str(bundle), str(inputs[0]), str(inputs[1]), "--out", str(out2)]) == 0
    assert "written as 'x_2'" in capsys.readouterr().out


def read_shape(path: Path) -> tuple[int, int]:
    from medseg_gui.core.imaging.images import read_image

    return read_image(path).shape[:2]


def test_predict_never_overwrites_an_existing_file_without_overwrite(tmp_path, bundle, capsys):
    out = tmp_path / "out"
    out.mkdir()
    truth = out / "case1_mask.png"
    truth.write_bytes(b"ground truth drawn by hand")
    case1 = write_png(tmp_path / "case1.png", ramp_image())
    case2 = write_png(tmp_path / "case2.png", ramp_image())
    code = main(["predict", str(bundle), str(case1), str(case2), "--out", str(out), "--overlay"])
    captured = capsys.readouterr()
    assert code == 1  # one input refused, the other done
    assert truth.read_bytes() == b"ground truth drawn by hand"
    assert not (out / "case1_overlay.png").exists()  # a refused input writes none of its files
    assert (out / "case2_mask.png").is_file()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "case1_mask.png" in lines[0] and "--overwrite" in lines[0]
    assert "Traceback" not in captured.err
    assert main(["predict", str(bundle), str(case1), "--out", str(out), "--overwrite"]) == 0
    assert truth.read_bytes() != b"ground truth drawn by hand"


def test_viewer_export_functions_refuse_an_existing_file_unless_asked(tmp_path):
    from medseg_gui.core.imaging import predict_export as pe
    target = tmp_path / "case1_mask.png"
    target.write_bytes(b"truth")
    labels = np.zeros((4, 5), np.uint8)
    with pytest.raises(OutputRefused, match="already exists"):
        pe.export_mask_png(target, labels)
    with pytest.raises(OutputRefused, match="already exists"):
        pe.write_rgb_png(target, np.zeros((4, 5, 3), np.uint8))
    assert target.read_bytes() == b"truth"
    pe.export_mask_png(target, labels, overwrite=True)
    assert target.read_bytes() != b"truth"
    with pytest.raises(OutputRefused, match="is a folder"):
        pe.export_mask_png(tmp_path, labels, overwrite=True)


# ---- 5. imports ----------------------------------------------------------------------------------------
def test_import_keeps_both_cases_whose_names_collide_and_counts_equal_files(tmp_path, capsys):
    src = tmp_path / "flat"
    for i, name in enumerate(["a b", "a_b", "A_B", "c", "d"]):
        make_pair(src / "images", src / "masks", name, seed=i)
    dst = tmp_path / "dst"
    assert main(["data", "import", "--from", "flat", str(src), str(dst), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    images = list(dst.glob("*/images/*.png"))
    assert len(images) == 5 == summary["n_train"] + summary["n_valid"]
    assert len(list(dst.glob("*/masks/*.png"))) == 5
    assert sum("written as" in w for w in summary["warnings"]) == 2
    report = json.loads((dst / "import_report.json").read_text())
    assert report["n_train"] + report["n_valid"] == 5


def test_an_import_where_every_item_is_skipped_writes_nothing(tmp_path, capsys):
    from medseg_gui.core.data.flat_import import import_flat
    from medseg_gui.core.data.import_output import DatasetImportError

    src = tmp_path / "flat"
    for i in range(3):
        make_pair(src / "images", src / "masks", f"c{i}", seed=i)  # values up to 3
    with pytest.raises(DatasetImportError, match="nothing could be imported"):
        import_flat(src, tmp_path / "dst", num_classes=2)
    assert main(["data", "import", "--from", "flat", str(src), str(tmp_path / "dst"), "--num-classes", "0"]) == 2
    _one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat"]  # no dataset, staging or lock left


def test_nifti_import_keeps_both_volumes_whose_names_collide(tmp_path):
    import nibabel as nib

    from medseg_gui.core.data.volume_import import import_volumes

    src = tmp_path / "nifti"
    src.mkdir()
    for k, name in enumerate(["a b", "a_b"]):
        img = np.full((8, 8, 3), 10 * (k + 1), np.int16)
        lab = np.zeros((8, 8, 3), np.uint8)
        lab[2:5, 2:5, :] = 1
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(src / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(src / f"{name}_seg.nii.gz"))
    summary = import_volumes(src, tmp_path / "dst", kind="nifti")
    files = list((tmp_path / "dst").glob("*/images/*.png"))
    assert len(files) == summary.n_train + summary.n_valid == 6  # 2 volumes x 3 slices
    assert len({f.name for f in files}) == 6
    assert any("already uses" in w for w in summary.warnings)


def test_two_imports_into_one_destination_refuse_while_the_first_runs(tmp_path, capsys):
    src = tmp_path / "flat"
    for i in range(3):
        make_pair(src / "images", src / "masks", f"c{i}", seed=i)
    dst = tmp_path / "dst"
    with exclusive_lock(tmp_path / ".dst.import-lock", str(dst)):  # the first import, still running
        assert main(["data", "import", "--from", "flat", str(src), str(dst)]) == 2
        err = capsys.readouterr().err
        _one_line_error(err)
        assert "another process" in err and str(os.getpid()) in err
    assert not dst.exists()
    # a lock left by a process that died is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from medseg_gui.core.run_lock import this_host

    (tmp_path / ".dst.import-lock").write_text(f"{int(dead.stdout)} {this_host()}\n")
    assert main(["data", "import", "--from", "flat", str(src), str(dst)]) == 0
    assert not (tmp_path / ".dst.import-lock").exists()


# ---- 6. --save -----------------------------------------------------------------------------------------
def test_save_refuses_an_existing_file_without_force(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine.toml"
    mine.write_text("# my settings\n")
    assert main(["recommend", "--vram-gb", "0", "--save", str(mine)]) == 2
    _one_line_error(capsys.readouterr().err)
    assert mine.read_text() == "# my settings\n"
    assert main(["recommend", "--vram-gb", "0", "--save", str(tmp_path)]) == 2  # a folder: never
    _one_line_error(capsys.readouterr().err)
    assert main(["recommend", "--vram-gb", "0", "--save", str(mine), "--force"]) == 0
    assert "[training]" in mine.read_text()

    # lr-find refuses before the sweep, not after minutes of work
    import medseg_gui.core.tools.lr_find as lr_find

    monkeypatch.setattr(lr_find, "find_lr", lambda *a, **k: pytest.fail("the sweep ran"))
    config = tmp_path / "run.toml"
    config.write_text(mine.read_text())
    before = config.read_text()
    assert main(["lr-find", "--config", str(config), "--save", str(config)]) == 2
    _one_line_error(capsys.readouterr().err)
    assert config.read_text() == before


# ---- read-only or full destinations --------------------------------------------------------------------
def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[0]) if args else None)
    return fail


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"),
                                         (errno.EACCES, "permission denied")])
def test_read_only_or_full_destination_is_one_line_not_a_traceback(tmp_path, bundle, capsys, monkeypatch,
                                                                   code, words):
    import tempfile

    import medseg_gui.core.imaging.write as imaging_write

    src = tmp_path / "flat"
    for i in range(3):
        make_pair(src / "images", src / "masks", f"c{i}", seed=i)
    image = write_png(tmp_path / "x.png", ramp_image())
    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkdtemp", _raise(code))
        runs = [["data", "import", "--from", "flat", str(src), str(tmp_path / "imp")],
                ["data", "demo", str(tmp_path / "demo"), "--n", "4", "--size", "32"],
                ["export", str(bundle), str(tmp_path / "exp")]]
        for argv in runs:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            _one_line_error(err)
            assert words in err, (argv, err)
    with monkeypatch.context() as m:  # the drive fills up half-way through an import
        from PIL import Image

        m.setattr(Image.Image, "save", _raise(code))
        assert main(["data", "import", "--from", "flat", str(src), str(tmp_path / "imp")]) == 2
        err = capsys.readouterr().err
        _one_line_error(err)
        assert words in err and str(tmp_path / "imp") in err and ".tmp" not in err
    second = write_png(tmp_path / "y.png", ramp_image())
    with monkeypatch.context() as m:  # predict: the failing output is named once, the rest not attempted
        m.setattr(imaging_write, "atomic_write", _raise(code))
        assert main(["predict", str(bundle), str(image), str(second), "--out", str(tmp_path / "pred")]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and words in err and "x_mask.png" in err
        assert "y.png" not in err and "1 more input(s) not processed" in err
    assert not (tmp_path / "imp").exists() and not (tmp_path / "demo").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder, no lock
