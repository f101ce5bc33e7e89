"""Model bundle round trip and refusal of broken bundles."""

from __future__ import annotations

import json

import pytest
import torch

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.bundle import BundleError, load_bundle, read_bundle_info, save_bundle
from medseg_gui.core.engine.model import build_model

from engine_helpers import tiny_config


def _model_and_config(tmp_path):
    config = tiny_config(tmp_path)
    model = build_model(config).eval()
    with torch.no_grad():  # make the weights differ from any fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model, config


def test_round_trip_gives_identical_logits(tmp_path):
    model, config = _model_and_config(tmp_path)
    dst = save_bundle(model, config, tmp_path / "bundle", source_run="run-1", in_channels_hint=1)
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "medseg.json", "model.safetensors"]
    loaded, info = load_bundle(dst)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, loaded(pixel_values=x).logits)
    assert info.num_classes == 3 and info.class_names == ["background", "disk", "square"]
    assert info.variant == "b0" and info.image_size == 64 and info.in_channels_hint == 1
    assert info.source_run == "run-1" and not loaded.training
    meta = json.loads((dst / "medseg.json").read_text())
    assert set(meta) == {"format", "variant", "image_size", "num_classes", "class_names", "class_colors",
                         "in_channels_hint", "created", "source_run"}


def test_save_replaces_an_existing_bundle_without_leftovers(tmp_path):
    model, config = _model_and_config(tmp_path)
    save_bundle(model, config, tmp_path / "bundle")
    config.dataset.class_names = ["bg", "a", "b"]
    save_bundle(model, config, tmp_path / "bundle")
    assert read_bundle_info(tmp_path / "bundle").class_names == ["bg", "a", "b"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle")] == []


def test_load_accepts_the_weights_file_path(tmp_path):
    model, config = _model_and_config(tmp_path)
    dst = save_bundle(model, config, tmp_path / "bundle")
    _, info = load_bundle(dst / "model.safetensors")
    assert info.path == dst


def test_broken_bundles_are_refused_with_the_file_named(tmp_path):
    model, config = _model_and_config(tmp_path)
    dst = save_bundle(model, config, tmp_path / "bundle")
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    meta = json.loads((dst / "medseg.json").read_text())
    (dst / "medseg.json").write_text(json.dumps(dict(meta, format=99)))
    with pytest.raises(BundleError, match="unsupported bundle format"):
        load_bundle(dst)
    (dst / "medseg.json").write_text(json.dumps(meta))
    other = cfg.RunConfig()
    cfg.set_num_classes(other, 3)
    other.training.variant, other.training.pretrained = "b1", "scratch"
    save_bundle(build_model(other), other, tmp_path / "b1")
    (dst / "model.safetensors").write_bytes((tmp_path / "b1" / "model.safetensors").read_bytes())
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(dst)
