"""Prediction from a tiny bundle: shapes, resizing back, volumes in batches, cancel, loading errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medseg_gui.core.engine.inference import ModelLoadError, Predictor, load_predictor
from medseg_gui.core.imaging.truth import ClassCountError, check_truth_classes
from viewer_helpers import ramp_image, tiny_bundle, tiny_model, tiny_run_config


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def predictor(bundle):
    return load_predictor(bundle, device="cpu")


def test_predict_slice_returns_mask_at_the_original_size(predictor):
    assert predictor.num_classes == 4 and predictor.image_size == 64 and predictor.device == "cpu"
    pred = predictor.predict_slice(ramp_image(80, 96), keep_probs=True)
    assert pred.labels.shape == (80, 96) and pred.labels.dtype == np.uint8
    assert pred.labels.max() < 4
    assert pred.confidence.shape == (80, 96) and pred.confidence.dtype == np.float16
    assert pred.probs.shape == (4, 80, 96)
    np.testing.assert_allclose(pred.probs.astype(np.float32).sum(0), 1.0, atol=1e-2)
    np.testing.assert_allclose(pred.probs.max(0), pred.confidence, atol=2e-3)
    top2 = np.sort(pred.probs.astype(np.float32), axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-2  # the random tiny model has near-ties that fp16 may flip
    assert clear.sum() > 100 and (pred.probs.argmax(0) == pred.labels)[clear].all()
    assert {"preprocess_ms", "forward_ms", "total_ms"} <= set(pred.timings)


def test_upsampling_happens_on_logits_not_on_the_label_map(predictor):
    # A 4x-upsampled label grid has blocks of 4x4 equal labels; bilinear logits give edges that are not.
    pred = predictor.predict_slice(ramp_image(256, 256))
    lab = pred.labels.astype(int)
    blocks = lab.reshape(64, 4, 64, 4)
    varying = (blocks.max(axis=(1, 3)) != blocks.min(axis=(1, 3)))
    # logits are 16x16 here: nearest-upsampled labels would change only every 16 px, never inside a 4x4 block
    assert len(np.unique(lab)) > 1 and varying.sum() > 0


def test_16bit_rgb_and_grey_inputs(predictor):
    assert predictor.predict_slice(ramp_image(40, 50, dtype=np.uint16)).labels.shape == (40, 50)
    assert predictor.predict_slice(ramp_image(40, 50, rgb=True)).labels.shape == (40, 50)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict_slice(np.zeros((3, 4, 5, 6), np.uint8))


def test_volume_prediction_matches_slices_and_reports_progress(predictor):
    vol = np.stack([ramp_image(48, 40), ramp_image(48, 40)[::-1], ramp_image(48, 40)[:, ::-1]])
    seen = []
    result = predictor.predict_volume(vol, progress=lambda d, t: seen.append((d, t)), batch_size=2)
    assert result.labels.shape == (3, 48, 40) and result.done == 3 and not result.cancelled
    assert seen == [(2, 3), (3, 3)]
    one = predictor.predict_slice(vol[1])
    assert (one.labels == result.labels[1]).mean() > 0.99


def test_volume_prediction_cancels_between_batches(predictor):
    vol = np.stack([ramp_image(32, 32)] * 5)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 1  # let the first batch run

    result = predictor.predict_volume(vol, should_stop=stop, batch_size=2)
    assert result.cancelled and result.done == 2
    assert not result.labels[2:].any()


def test_load_from_run_folder_checkpoint_and_named_safetensors(tmp_path, bundle):
    import torch
    from safetensors.torch import save_file

    from medseg_gui.core import runs
    config = tiny_run_config()
    run = tmp_path / "run"
    (run / runs.CHECKPOINT_DIR).mkdir(parents=True)
    config.training.pretrained = str(tmp_path / "arch")
    tiny_model().save_pretrained(tmp_path / "arch")  # the run's architecture comes from its start folder
    from medseg_gui.core import config as cfg
    cfg.save(config, run / runs.CONFIG_FILE)
    model = tiny_model(seed=3)
    runs.save_checkpoint(runs.checkpoint_paths(run)[0], model_state=model.state_dict(), optimizer_state=None,
                         epochs_completed=1, step=5, best_f1=0.5, batch_size=2, accumulate_grad_batches=1,
                         config=config)
    p = Predictor.from_path(run, device="cpu")
    assert p.info.extra["checkpoint"].endswith(runs.BEST_CHECKPOINT) and p.num_classes == 4
    x = ramp_image(64, 64)
    with torch.inference_mode():
        ref = model(pixel_values=torch.from_numpy(
            __import__("medseg_gui.core.data.normalize", fromlist=["x"]).to_model_input_np(x))).logits
    assert p.predict_slice(x).labels.shape == (64, 64) and ref.shape[1] == 4
    # a run with a bundle loads the bundle
    shutil.copytree(bundle, run / runs.BUNDLE_DIR)
    assert Predictor.from_path(run, device="cpu").info.path == run / runs.BUNDLE_DIR
    # a .safetensors of another name beside medseg.json
    named = tmp_path / "b2"
    shutil.copytree(bundle, named)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(named / "best.safetensors"))
    assert Predictor.from_path(named / "best.safetensors", device="cpu").num_classes == 4


def test_missing_model_messages(tmp_path):
    with pytest.raises(ModelLoadError, match="nowhere.*does not exist.*bundle"):
        load_predictor(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty.*neither a model bundle"):
        load_predictor(tmp_path / "empty")
    (tmp_path / "lone.safetensors").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="lone.safetensors.*medseg.json"):
        load_predictor(tmp_path / "lone.safetensors")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    from medseg_gui.core import config as cfg
    cfg.save(tiny_run_config(), run / "config.toml")
    with pytest.raises(ModelLoadError, match="no bundle/ and no checkpoint"):
        load_predictor(run)


def test_corrupt_safetensors_names_the_file(tmp_path, bundle):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match=r"bad[/\\]model.safetensors"):
        load_predictor(bad, device="cpu")


def test_bundle_whose_metadata_disagrees_with_the_weights(tmp_path, bundle):
    bad = tmp_path / "mismatch"
    shutil.copytree(bundle, bad)
    meta = json.loads((bad / "medseg.json").read_text())
    meta["num_classes"] = 6
    meta["class_names"] = [f"c{i}" for i in range(6)]
    (bad / "medseg.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="mismatch.*6 classes.*4"):
        load_predictor(bad, device="cpu")


def test_truth_class_count_check():
    truth = np.zeros((4, 4), np.uint8)
    check_truth_classes(truth, 4, truth_source="gt.png", model_source="m")  # only background: fine
    truth[0, 0] = 5
    with pytest.raises(ClassCountError, match="gt.png.*up to 5 \\(6 classes\\).*m predicts 4 classes \\(a, b"):
        check_truth_classes(truth, 4, truth_source="gt.png", model_source="m", class_names=["a", "b", "c", "d"])
    with pytest.raises(ClassCountError, match="seg.dcm.*defines 3 classes"):
        check_truth_classes(np.zeros(3, np.uint8), 4, truth_source="seg.dcm", model_source="m",
                            truth_names=["background", "liver", "x"])
