"""Model sources: scratch architectures, offline detection, local folder and .safetensors files."""

from __future__ import annotations

import time

import pytest
import torch

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.model import VARIANT_ARCH, ModelSourceError, build_model, scratch_config
from medseg_gui.core.planning.weights import hub_reachable

from engine_helpers import TINY_ARCH, tiny_model_dir


def _config(num_classes=3, **training) -> cfg.RunConfig:
    config = cfg.RunConfig()
    cfg.set_num_classes(config, num_classes)
    config.training.variant = "b0"
    for k, v in training.items():
        setattr(config.training, k, v)
    return config


@pytest.mark.parametrize("variant,depths,last_hidden,decoder", [
    ("b0", [2, 2, 2, 2], 256, 256), ("b1", [2, 2, 2, 2], 512, 256), ("b2", [3, 4, 6, 3], 512, 768),
    ("b3", [3, 4, 18, 3], 512, 768), ("b4", [3, 8, 27, 3], 512, 768), ("b5", [3, 6, 40, 3], 512, 768)])
def test_variant_architectures(variant, depths, last_hidden, decoder):
    c = scratch_config(variant, 5)
    assert c.depths == depths and c.hidden_sizes[-1] == last_hidden and c.decoder_hidden_size == decoder
    assert c.num_labels == 5


def test_b0_from_scratch_has_the_published_size():
    model = build_model(_config(pretrained="scratch", variant="b0"))
    params = sum(p.numel() for p in model.parameters())
    assert 3.5e6 < params < 3.9e6  # SegFormer-B0: 3.7 M parameters
    out = model(pixel_values=torch.zeros(1, 3, 64, 64)).logits
    assert out.shape == (1, 3, 16, 16)


def test_auto_offline_falls_back_to_scratch_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    messages = []
    start = time.monotonic()
    model = build_model(_config(pretrained="auto"), log=lambda level, msg: messages.append((level, msg)))
    assert time.monotonic() - start < 2.0
    assert model.config.num_labels == 3
    assert any(level == "warning" and "from scratch" in msg for level, msg in messages)


def test_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="offline"):
        build_model(_config(pretrained="hub"))


def test_unreachable_hub_is_detected_within_the_budget(monkeypatch):
    # a TEST-NET address (RFC 5737) never answers: the probe must give up on time
    monkeypatch.setenv("HF_ENDPOINT", "https://192.0.2.1")
    start = time.monotonic()
    assert hub_reachable(timeout_s=0.5) is False
    assert time.monotonic() - start < 1.5


def test_local_folder_resizes_the_head(tmp_path):
    folder = tiny_model_dir(tmp_path, num_classes=3)
    model = build_model(_config(num_classes=5, pretrained=str(folder)))
    assert model.config.num_labels == 5 and model.config.hidden_sizes == TINY_ARCH["hidden_sizes"]
    assert model.config.id2label[1] == "class_1"


def test_safetensors_file_loads_matching_tensors(tmp_path):
    from safetensors.torch import save_file

    source = build_model(_config(pretrained="scratch"))
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    logs = []
    model = build_model(_config(num_classes=4, pretrained=str(path)), log=lambda lv, m: logs.append(m))
    key = "segformer.stages.0.patch_embeddings.proj.weight"
    assert torch.equal(model.state_dict()[key], state[key])
    assert model.config.num_labels == 4
    assert any("re-initialised" in m for m in logs)


def test_safetensors_in_transformers4_naming_loads(tmp_path):
    """State dicts saved by transformers 4 name blocks encoder.block.N; 5.x renames them on load."""
    from safetensors.torch import save_file

    source = build_model(_config(pretrained="scratch"))
    old = {k.replace("segformer.stages.0.patch_embeddings.", "segformer.encoder.patch_embeddings.0."): v.contiguous()
           for k, v in source.state_dict().items()}
    assert "segformer.encoder.patch_embeddings.0.proj.weight" in old
    path = tmp_path / "old.safetensors"
    save_file(old, str(path))
    model = build_model(_config(pretrained=str(path)))
    key = "segformer.stages.0.patch_embeddings.proj.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])


def test_unrelated_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ModelSourceError, match="no tensor"):
        build_model(_config(pretrained=str(path)))


def test_missing_path_names_the_field(tmp_path):
    with pytest.raises(ModelSourceError, match="training.pretrained"):
        build_model(_config(pretrained=str(tmp_path / "nope")))


def test_variant_table_covers_all_config_variants():
    assert set(VARIANT_ARCH) == set(cfg.VARIANTS)
