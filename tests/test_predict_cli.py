"""`medseg predict` on files, folders, DICOM and NIfTI, and `medseg export`; outputs re-read."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from medseg_gui.cli import main
from medseg_gui.core.imaging.images import read_image
from medseg_gui.core.imaging.read import read_volume
from viewer_helpers import ramp_image, tiny_bundle, write_png


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("cli_models"))


def test_predict_files_folders_and_volumes(bundle, tmp_path, capsys):
    from nibabel.testing import data_path
    from pydicom.data import get_testdata_file

    folder = tmp_path / "slices"
    write_png(folder / "a.png", ramp_image(40, 50))
    write_png(folder / "b.png", ramp_image(30, 20, rgb=True))
    single = write_png(tmp_path / "single.png", ramp_image(33, 44, dtype=np.uint16))
    nifti = os.path.join(data_path, "anatomical.nii")
    dicom = get_testdata_file("CT_small.dcm")
    out = tmp_path / "out"
    code = main(["predict", str(bundle), str(single), str(folder), nifti, dicom, "--out", str(out),
                 "--overlay", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["errors"] and len(report["results"]) == 5
    m = read_image(out / "single_mask.png")
    assert m.shape == (33, 44) and m.dtype == np.uint8 and m.max() < 4
    assert read_image(out / "slices" / "a_mask.png").shape == (40, 50)
    assert read_image(out / "slices" / "b_mask.png").shape == (30, 20)
    assert read_image(out / "slices" / "b_overlay.png").shape == (30, 20, 3)
    anat = read_volume(out / "anatomical_mask.nii.gz")
    src = read_volume(nifti)
    assert anat.data.shape == src.data.shape and set(np.unique(anat.data)) <= {0, 1, 2, 3}
    assert len(list((out / "anatomical_overlay").glob("*.png"))) == src.n_slices
    ct = read_volume(out / "CT_small_mask.nii.gz")
    assert ct.data.shape == (1, 128, 128)
    by_input = {r["input"]: r for r in report["results"]}
    assert by_input[nifti]["slices"] == src.n_slices
    assert abs(sum(by_input[dicom]["class_fraction"].values()) - 1) < 1e-3


def test_predict_text_summary_and_failures(bundle, tmp_path, capsys):
    img = write_png(tmp_path / "ok.png", ramp_image())
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    code = main(["predict", str(bundle), str(img), str(bad), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 1
    assert "ok.png: 1 slice(s)" in captured.out and "1 input(s) done, 2 failed" in captured.out
    assert "broken.png" in captured.err and "missing.png" in captured.err


def test_predict_missing_or_corrupt_model(tmp_path, bundle, capsys):
    img = write_png(tmp_path / "x.png", ramp_image())
    assert main(["predict", str(tmp_path / "nope"), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    assert main(["predict", str(broken), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_export_copies_a_run_bundle(tmp_path, bundle, capsys):
    from medseg_gui.core import config as cfg
    from medseg_gui.core import runs
    from medseg_gui.core.engine.bundle import read_bundle_info
    from viewer_helpers import tiny_run_config

    run = tmp_path / "run"
    (run / runs.CHECKPOINT_DIR).mkdir(parents=True)
    cfg.save(tiny_run_config(), run / runs.CONFIG_FILE)
    assert main(["export", str(run), str(tmp_path / "dst")]) == 2
    assert "has no bundle" in capsys.readouterr().err
    shutil.copytree(bundle, run / runs.BUNDLE_DIR)
    assert main(["export", str(run), str(tmp_path / "dst"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["variant"] == "b0"
    assert read_bundle_info(tmp_path / "dst").num_classes == 4
    assert main(["export", str(run), str(tmp_path / "dst")]) == 2  # exists, no --force
    assert main(["export", str(run), str(tmp_path / "dst"), "--force"]) == 0
    assert (tmp_path / "dst" / "model.safetensors").read_bytes() == (bundle / "model.safetensors").read_bytes()


def test_export_from_checkpoint_reexports_weights(tmp_path, capsys):
    import torch

    from medseg_gui.core import config as cfg
    from medseg_gui.core import runs
    from medseg_gui.core.engine.inference import load_predictor
    from viewer_helpers import tiny_model, tiny_run_config

    run = tmp_path / "run"
    (run / runs.CHECKPOINT_DIR).mkdir(parents=True)
    config = tiny_run_config()
    config.training.pretrained = str(tmp_path / "arch")
    tiny_model().save_pretrained(tmp_path / "arch")
    cfg.save(config, run / runs.CONFIG_FILE)
    model = tiny_model(seed=7)
    runs.save_checkpoint(runs.checkpoint_paths(run)[1], model_state=model.state_dict(), optimizer_state=None,
                         epochs_completed=1, step=3, best_f1=None, batch_size=2, accumulate_grad_batches=1,
                         config=config)
    assert main(["export", str(run), str(tmp_path / "b"), "--from-checkpoint", "best"]) == 2
    assert "best.ckpt does not exist" in capsys.readouterr().err
    assert main(["export", str(run), str(tmp_path / "b"), "--from-checkpoint", "last"]) == 0
    loaded = load_predictor(tmp_path / "b", device="cpu").model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key
