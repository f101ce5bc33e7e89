"""Bilinear upsampling whose gradient is two small matrix products instead of a scatter-add.

Why: under ``torch.compile`` PyTorch decomposes ``interpolate(mode="bilinear")`` into gathers, so its
backward becomes an ``index_put`` with atomic adds, every source pixel receiving from up to 16 (4x) or
64 (8x) output pixels at once. In the compiled SegFormer step that one kernel (the decode head's
upsampling backward, fused with its BatchNorm backward) took 8.2 ms of 40.7 at b5 · 16 · 288 and 16.3
of 65.4 at batch 32 (one H200, benchmarks/results/profile_b5_16_288_compiled.json and _32_), against
1.6 ms for the eager kernel. Bilinear resampling is separable and linear, ``y = A_h x A_w^T`` per
channel, so its gradient is ``A_h^T g A_w``: two small dense products, no atomics, nothing saved
from the forward but two shapes.

The forward stays ``F.interpolate`` (bit-for-bit what the model computed before); only the backward
changes, and only when asked for and while compiling (eager keeps PyTorch's own backward kernel,
which is fast). ``A`` reproduces PyTorch's source-index rule for ``align_corners=False`` with the
output size given: ``src = (dst + 0.5) * in / out - 0.5``, clamped at 0, the upper neighbour clamped
to the last row. Its weights are multiples of 1/16 for the 2x, 4x and 8x ratios of SegFormer's
stages, so they are exact in bf16 and the products run in the gradient's dtype; other ratios run in
float32.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _weights(out_size: int, in_size: int) -> tuple[tuple[float, ...], ...]:
    """The matrix as nested tuples (plain numbers, so the cache never holds a tensor made while the
    compiler traces)."""
    rows = [[0.0] * in_size for _ in range(out_size)]
    for i in range(out_size):
        src = max((i + 0.5) * (in_size / out_size) - 0.5, 0.0)
        low = min(int(src), in_size - 1)
        high = min(low + 1, in_size - 1)
        frac = src - low
        rows[i][low] += 1.0 - frac
        rows[i][high] += frac
    return tuple(tuple(r) for r in rows)


def interpolation_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out_size, in_size) float64 weights of PyTorch's bilinear resampling along one axis
    (``align_corners=False``, size given): row ``i`` holds the two weights output ``i`` takes from its
    neighbours."""
    return torch.tensor(_weights(out_size, in_size), dtype=torch.float64)


@functools.lru_cache(maxsize=64)
def _exact_in_half(out_size: int, in_size: int) -> bool:
    """Whether every weight is a multiple of 1/256 (then exact in bf16 and fp16, whose 8 and 11
    significant bits hold any k/256 below 1)."""
    return all((w * 256).is_integer() for row in _weights(out_size, in_size) for w in row)


def _matrix_for(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """The matrix on ``like``'s device, in the dtype to multiply in (``like``'s when the weights are
    exact in it, else float32)."""
    exact = like.dtype in (torch.float32, torch.float64) or _exact_in_half(out_size, in_size)
    return interpolation_matrix(out_size, in_size).to(device=like.device, dtype=like.dtype if exact else torch.float32)


class _BilinearMatmulGrad(torch.autograd.Function):
    """``F.interpolate(x, size, "bilinear", align_corners=False)`` with the gradient ``A_h^T g A_w``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.in_size = (int(x.shape[-2]), int(x.shape[-1]))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (in_h, in_w), (out_h, out_w) = ctx.in_size, (int(grad.shape[-2]), int(grad.shape[-1]))
        rows, cols = _matrix_for(out_h, in_h, grad), _matrix_for(out_w, in_w, grad)
        dtype = torch.promote_types(rows.dtype, cols.dtype)
        narrowed = torch.matmul(grad.to(dtype), cols.to(dtype))   # (..., H, W) @ (W, w) -> (..., H, w)
        result = torch.matmul(rows.to(dtype).t(), narrowed)       # (h, H) @ (..., H, w) -> (..., h, w)
        return result.to(grad.dtype), None


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int], grad_by_matmul: bool = False) -> torch.Tensor:
    """Bilinear upsampling of a (B, C, h, w) map to ``size`` (``align_corners=False``).

    With ``grad_by_matmul`` and while ``torch.compile`` traces, the backward is the matrix form above;
    otherwise this is ``F.interpolate``."""
    if grad_by_matmul and torch.compiler.is_compiling():
        return _BilinearMatmulGrad.apply(x, tuple(size))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
