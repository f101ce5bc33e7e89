"""The fast SegFormer path computes what transformers' model computes, with the same weights and keys."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from medseg_gui.core import config as cfg
from medseg_gui.core.engine import fast_segformer
from medseg_gui.core.engine.fast_segformer import FastSegformerDecodeHead, use_fast_path, uses_fast_path
from medseg_gui.core.engine.model import build_model, scratch_config

# b0 itself, and a b2-shaped model (decoder wider than the last stage, 4 stages of different widths)
# shrunk so the test stays fast on a CPU.
B2_SHAPED = {"depths": [2, 1, 2, 1], "hidden_sizes": [16, 32, 40, 64], "num_attention_heads": [1, 2, 5, 8],
             "decoder_hidden_size": 96}
SHAPES = [("b0", {}), ("b2", B2_SHAPED)]


def _pair(variant: str, overrides: dict, num_classes: int = 4, **extra):
    """(transformers' original model, a deep copy switched to the fast path)."""
    from transformers import SegformerForSemanticSegmentation

    torch.manual_seed(0)
    original = SegformerForSemanticSegmentation(scratch_config(variant, num_classes, **overrides, **extra))
    fast = use_fast_path(copy.deepcopy(original))
    assert type(original.decode_head) is not FastSegformerDecodeHead and uses_fast_path(fast)
    return original, fast


@pytest.mark.parametrize("variant,overrides", SHAPES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_logits_and_gradients_match_transformers(variant, overrides, mode):
    # dropout and stochastic depth off so both models draw the same (no) random numbers
    original, fast = _pair(variant, overrides, classifier_dropout_prob=0.0, drop_path_rate=0.0)
    for model in (original, fast):
        model.train(mode == "train")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    target = torch.randn(2, 4, 24, 24, generator=torch.Generator().manual_seed(2))
    logits_o = original(pixel_values=x).logits
    logits_f = fast(pixel_values=x).logits
    assert logits_f.shape == logits_o.shape == (2, 4, 24, 24)
    torch.testing.assert_close(logits_f, logits_o, atol=1e-5, rtol=1e-5)
    ((logits_o - target) ** 2).mean().backward()
    ((logits_f - target) ** 2).mean().backward()
    grads_o = {n: p.grad for n, p in original.named_parameters()}
    scale = max(g.abs().max().item() for g in grads_o.values())
    for name, p in fast.named_parameters():
        assert p.grad is not None, name
        # some gradients are mathematically zero (a bias before a training-mode BatchNorm, key biases
        # under softmax): compare against the largest gradient, not each tensor's own rounding noise
        torch.testing.assert_close(p.grad, grads_o[name], atol=1e-5 * scale, rtol=1e-4, msg=name)
    if mode == "train":  # BatchNorm's running statistics are updated identically
        torch.testing.assert_close(fast.decode_head.batch_norm.running_var,
                                   original.decode_head.batch_norm.running_var, atol=1e-6, rtol=1e-5)


def test_non_square_inputs_match():
    original, fast = _pair("b2", B2_SHAPED, classifier_dropout_prob=0.0, drop_path_rate=0.0)
    original.eval(), fast.eval()
    x = torch.randn(1, 3, 64, 160)
    torch.testing.assert_close(fast(pixel_values=x).logits, original(pixel_values=x).logits, atol=1e-5, rtol=1e-5)


def test_state_dict_keys_and_shapes_are_unchanged_and_models_pickle():
    original, fast = _pair("b0", {})
    a, b = original.state_dict(), fast.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    for copy_ in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert uses_fast_path(copy_)
    assert fast.config._attn_implementation == "sdpa"
    assert use_fast_path(fast) is fast and uses_fast_path(fast)  # idempotent


def test_every_build_route_gets_the_fast_path_and_bundles_round_trip(tmp_path):
    from safetensors.torch import save_file

    from medseg_gui.core.engine.bundle import load_bundle, save_bundle

    config = cfg.RunConfig()
    cfg.set_num_classes(config, 3)
    config.training.variant, config.training.pretrained = "b0", "scratch"
    scratch = build_model(config)
    assert uses_fast_path(scratch)
    scratch.save_pretrained(tmp_path / "folder")
    save_file({k: v.contiguous() for k, v in scratch.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for source in (tmp_path / "folder", tmp_path / "w.safetensors"):
        config.training.pretrained = str(source)
        assert uses_fast_path(build_model(config)), source
    save_bundle(scratch, config, tmp_path / "bundle")
    loaded, _ = load_bundle(tmp_path / "bundle")
    assert uses_fast_path(loaded)
    x = torch.randn(1, 3, 64, 64)
    scratch.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, scratch(pixel_values=x).logits)
    # the saved weights load into transformers' own, unmodified model and predict the same
    from transformers import SegformerForSemanticSegmentation

    plain = SegformerForSemanticSegmentation.from_pretrained(str(tmp_path / "folder")).eval()
    assert not uses_fast_path(plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(pixel_values=x).logits, scratch(pixel_values=x).logits,
                                   atol=1e-5, rtol=1e-5)


def test_environment_switch_keeps_transformers_modules(monkeypatch):
    monkeypatch.setenv(fast_segformer.FAST_PATH_ENV, "off")
    config = cfg.RunConfig()
    cfg.set_num_classes(config, 3)
    config.training.variant, config.training.pretrained = "b0", "scratch"
    assert not uses_fast_path(build_model(config))


def test_fast_model_traces_as_one_graph():
    """The whole-step compile sees one graph: no hook machinery, no per-block Python numbers (HF's own
    model breaks the graph on its output-capturing hooks)."""
    original, fast = _pair("b0", {"depths": [2, 1, 1, 1]})
    fast.train()
    torch._dynamo.reset()
    try:
        traced = torch.compile(lambda x: fast(pixel_values=x).logits, backend="eager", fullgraph=True, dynamic=False)
        traced(torch.randn(2, 3, 64, 64)).sum().backward()
    finally:
        torch._dynamo.reset()
