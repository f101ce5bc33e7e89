"""Regional compilation: repeated SegFormer blocks share one compiled graph per stage, the step's maths
is unchanged, and the choice between whole and regional is explicit."""

from __future__ import annotations

import functools

import pytest
import torch

from medseg_gui.core.engine.fast_segformer import use_fast_path
from medseg_gui.core.engine.lit_module import OptimSettings, SegModule
from medseg_gui.core.engine.model import scratch_config
from medseg_gui.core.planning import speed

# three blocks per stage, with stochastic depth rising block by block (HF's default 0.1)
ARCH = {"depths": [3, 3, 3, 3], "hidden_sizes": [8, 16, 32, 48], "num_attention_heads": [1, 1, 2, 2],
        "decoder_hidden_size": 32}


class CountingBackend:
    """A torch.compile backend that runs the traced graph eagerly and counts compilations."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _model(fast: bool = True):
    from transformers import SegformerForSemanticSegmentation

    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(scratch_config("b0", 3, **ARCH))
    return use_fast_path(model) if fast else model


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    speed.prepare_compiler()
    yield
    torch._dynamo.reset()


def test_blocks_of_a_stage_compile_once_and_keep_the_state_dict():
    model = _model().train()
    keys = list(model.state_dict())
    backend = CountingBackend()
    wrapped = speed.compile_regions(model, "default", backend=backend)
    assert wrapped == sum(ARCH["depths"]) + 1  # every block and the decode head
    x = torch.randn(2, 3, 64, 64)
    model(pixel_values=x).logits.sum().backward()
    first = backend.graphs
    # one graph per stage (blocks share code and shapes), one for stage 1's first block (no stochastic
    # depth: HF gives it an Identity), one for the head; 12 blocks would be 12+ without the fast path
    assert first <= len(ARCH["depths"]) + 2, first
    model(pixel_values=x).logits.sum().backward()
    assert backend.graphs == first  # no recompilation on the next step
    assert list(model.state_dict()) == keys
    speed.uncompile_regions(model)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


def test_without_the_fast_path_every_block_would_recompile():
    """Why the fast path's drop path and encoder exist: HF's per-block floats and capture hooks."""
    model = _model(fast=False).train()
    backend = CountingBackend()
    speed.compile_regions(model, "default", backend=backend)
    model(pixel_values=torch.randn(2, 3, 64, 64)).logits.sum().backward()
    assert backend.graphs > len(ARCH["depths"]) + 2


def test_scope_is_regional_unless_asked_and_never_regional_with_inductor_graphs(monkeypatch):
    monkeypatch.delenv(speed.COMPILE_SCOPE_ENV, raising=False)
    assert speed.compile_scope("default") == speed.DEFAULT_COMPILE_SCOPE == "regional"
    monkeypatch.setenv(speed.COMPILE_SCOPE_ENV, "whole")
    assert speed.compile_scope("default") == "whole"
    monkeypatch.setenv(speed.COMPILE_SCOPE_ENV, "regional")
    assert speed.compile_scope("reduce-overhead") == "whole"
    monkeypatch.setenv(speed.COMPILE_SCOPE_ENV, "nonsense")
    assert speed.compile_scope("default") == "whole"


def test_regional_training_step_computes_the_eager_loss(monkeypatch):
    """on_fit_start's regional branch, with a counting backend instead of inductor (no C compiler run)."""
    monkeypatch.setenv(speed.COMPILE_SCOPE_ENV, "regional")
    backend = CountingBackend()
    monkeypatch.setattr(speed, "configure_compile_cache", lambda: "")
    monkeypatch.setattr(speed, "compile_fn", lambda fn, mode: torch.compile(fn, backend=backend, dynamic=False))
    monkeypatch.setattr(speed, "compile_regions", functools.partial(speed.compile_regions, backend=backend))
    module = SegModule(_model(), 3, OptimSettings(), compile_mode="default", channels_last=False)
    for m in module.model.modules():  # nothing random (stochastic depth, dropout): comparable losses
        if hasattr(m, "keep"):
            m.keep.fill_(1.0)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    images = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    masks = torch.randint(0, 3, (2, 64, 64))
    from medseg_gui.core.data.normalize import input_constants

    module._norm = input_constants(torch.device("cpu"))
    eager = module._train_loss(images, masks)
    module.on_fit_start()
    assert module._train_fn is not module._train_loss
    compiled = module._train_fn(images, masks)
    assert backend.graphs > 0
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    module.on_fit_end()
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in module.model.modules())
