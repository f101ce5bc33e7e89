"""The matrix-product gradient of bilinear upsampling (core/engine/bilinear.py) is PyTorch's gradient."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from engine_helpers import TINY_ARCH

from medseg_gui.core.engine import bilinear

# SegFormer's stage ratios at 288 and 224 px (exact in bf16), and ratios that are not
SIZES = [((9, 9), (72, 72)), ((18, 18), (72, 72)), ((36, 36), (72, 72)), ((7, 7), (56, 56)),
         ((10, 13), (37, 41)), ((5, 6), (5, 12))]


@pytest.mark.parametrize("src, dst", SIZES)
def test_matrices_reproduce_interpolate(src, dst):
    x = torch.randn(2, 3, *src, dtype=torch.float64)
    rows = bilinear.interpolation_matrix(dst[0], src[0])
    cols = bilinear.interpolation_matrix(dst[1], src[1])
    expected = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    assert torch.allclose(rows @ x @ cols.t(), expected, atol=1e-12)
    assert torch.allclose(rows.sum(1), torch.ones(dst[0], dtype=torch.float64))


@pytest.mark.parametrize("src, dst", SIZES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_equals_pytorchs(src, dst, dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 4, *src, dtype=dtype)
    g = torch.randn(2, 4, *dst, dtype=dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours = bilinear._BilinearMatmulGrad.apply(a, dst)
    out_ref = F.interpolate(b, size=dst, mode="bilinear", align_corners=False)
    assert torch.equal(out_ours, out_ref)  # the forward is PyTorch's own
    out_ours.backward(g)
    out_ref.backward(g)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(a.grad, b.grad, atol=tol, rtol=tol)


def test_channels_last_bf16_gradient_matches_within_rounding():
    x = torch.randn(2, 16, 18, 18).to(memory_format=torch.channels_last)
    g = torch.randn(2, 16, 72, 72).to(memory_format=torch.channels_last)
    a = x.clone().bfloat16().requires_grad_()
    bilinear._BilinearMatmulGrad.apply(a, (72, 72)).backward(g.bfloat16())
    b = x.clone().requires_grad_()
    F.interpolate(b, size=(72, 72), mode="bilinear", align_corners=False).backward(g)
    assert a.grad.dtype == torch.bfloat16
    assert torch.allclose(a.grad.float(), b.grad, atol=0.1, rtol=0.02)


def test_products_run_in_the_gradients_dtype_only_when_the_weights_are_exact():
    like = torch.zeros(1, dtype=torch.bfloat16)
    assert bilinear._matrix_for(72, 18, like).dtype == torch.bfloat16   # weights k/8: exact
    assert bilinear._matrix_for(37, 10, like).dtype == torch.float32   # 0.2297...: not exact


def _head(grad_by_matmul: bool):
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.engine.fast_segformer import use_fast_path
    from medseg_gui.core.engine.model import scratch_config

    torch.manual_seed(0)
    config = scratch_config("b0", 3, **TINY_ARCH, classifier_dropout_prob=0.0, drop_path_rate=0.0)
    model = use_fast_path(SegformerForSemanticSegmentation(config))
    model.decode_head.upsample_grad_by_matmul = grad_by_matmul
    return model


def test_compiled_head_takes_the_matrix_gradient_only_when_asked(monkeypatch):
    """Traced with torch.compile (aot_eager: no C++ build), the head's gradients equal the eager
    model's, and the matrix backward is what the trace used exactly when the flag is on."""
    calls = []
    original = bilinear._BilinearMatmulGrad.backward

    def spy(ctx, grad):
        calls.append(tuple(grad.shape))
        return original(ctx, grad)

    monkeypatch.setattr(bilinear._BilinearMatmulGrad, "backward", staticmethod(spy))
    x = torch.randn(2, 3, 64, 64)
    reference = _head(False).train()
    reference(pixel_values=x).logits.square().mean().backward()
    for flag in (True, False):
        torch._dynamo.reset()
        calls.clear()
        model = copy.deepcopy(_head(flag)).train()
        model.decode_head.compile(backend="aot_eager", dynamic=False)
        model(pixel_values=x).logits.square().mean().backward()
        assert bool(calls) is flag
        ref = dict(reference.named_parameters())
        for name, p in model.named_parameters():
            assert torch.allclose(p.grad, ref[name].grad, atol=1e-6, rtol=1e-4), name
    torch._dynamo.reset()


def test_the_environment_switches_the_matrix_gradient_on(monkeypatch):
    from medseg_gui.core.engine import fast_segformer

    monkeypatch.delenv(fast_segformer.UPSAMPLE_GRAD_ENV, raising=False)
    assert _head(False).decode_head.upsample_grad_by_matmul is False
    monkeypatch.setenv(fast_segformer.UPSAMPLE_GRAD_ENV, "matmul")
    model = _head(False)
    fast_segformer.use_fast_path(model)
    assert model.decode_head.upsample_grad_by_matmul is True
