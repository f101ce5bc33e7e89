"""SegFormer's fast path: the same maths and weights as transformers' model, less memory traffic.

Why: at the tiers' 288 px the decode head is the single largest memory consumer of the step.
HF's head projects every encoder stage to ``D`` channels, upsamples each to 1/4 of the image,
concatenates the four (at b5, batch 16: a 16 x 3072 x 72 x 72 tensor, ~0.5 GB in bf16, written and read
forward and backward) and fuses them with a bias-free 1x1 convolution ``W = [W_3 W_2 W_1 W_0]``
(HF concatenates the stages in reverse order). Bilinear upsampling acts per channel and a 1x1
convolution per pixel, both linearly, so they commute:

    fuse(concat_i(up(proj_i(f_i)))) = sum_i up(W_i proj_i(f_i)) = sum_i up((W_i P_i) f_i + W_i b_i)

Each stage then needs one linear layer at its own (low) resolution, composed from the two weights on
the fly (a ``D x D x C_i`` product per step, negligible), and only ``D`` channels are upsampled and
summed at 1/4 resolution: no concat, and about two thirds of the fuse's FLOPs gone. The module keeps
its parameters and their names, so state dicts, checkpoints and ``save_pretrained`` folders stay
exactly those of transformers.

The swap changes the head's class (a subclass with another ``forward``) rather than binding a function
to the instance, so the model still pickles and deep-copies (DDP spawn, ``copy.deepcopy``). Attention
is asked for PyTorch's fused ``scaled_dot_product_attention`` ("sdpa"), which SegFormer supports in
transformers 5 (its attention dropout is 0, so nothing random changes).

Two more swaps serve the compiler (core/planning/speed.py): the encoder returns its stage outputs
directly instead of collecting them with transformers' hooks (which break a compiled graph at every
attention), and stochastic depth keeps its per-block probability in a tensor (a Python float per
block makes each block compile separately).

Measured (one H200, b5, batch 16, 288 px, whole step as a CUDA graph, benchmarks/results/
bench_train_speed_b5_fastpath.json): 296 img/s against 290 with transformers' modules, and 8.4 GiB
reserved instead of 12.3: the head's kernels were never the bottleneck, its memory was. On a CPU (b0,
4 x 256 px, one thread) a training step takes about half the time (0.51 s against 1.09 s).

``MEDSEG_FAST_PATH=off`` in the environment keeps transformers' own modules (comparisons, or a way
out should a future transformers change the head).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead, SegformerDropPath, SegformerModel

from medseg_gui.core.engine.bilinear import upsample_bilinear

FAST_PATH_ENV = "MEDSEG_FAST_PATH"
# "matmul": the decode head's upsampling gradient as two matrix products while compiled (bilinear.py);
# anything else: PyTorch's own. Off by default until measured on GPUs.
UPSAMPLE_GRAD_ENV = "MEDSEG_UPSAMPLE_GRAD"

Log = Callable[[str, str], None]  # (level, message)


def fast_path_enabled() -> bool:
    """False when the environment asks for transformers' original modules."""
    return os.environ.get(FAST_PATH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


class FastSegformerDecodeHead(SegformerDecodeHead):
    """HF's decode head with the fuse convolution moved before the upsampling (see the module doc).

    Only ``forward`` differs; parameters, buffers and their names are the parent's.
    ``upsample_grad_by_matmul``: the compiled backward of the upsampling as two matrix products
    (core/engine/bilinear.py; ``MEDSEG_UPSAMPLE_GRAD=matmul``, off unless asked for).
    """

    upsample_grad_by_matmul: bool = False

    def forward(self, encoder_hidden_states: Any, **kwargs: Any) -> torch.Tensor:
        stages = len(self.linear_projections)
        out_size = tuple(encoder_hidden_states[0].shape[2:]) if encoder_hidden_states[0].ndim == 4 else None
        fuse = self.linear_fuse.weight.flatten(1)  # (D, stages * D), the 1x1 kernel as a matrix
        width = fuse.shape[0]
        total: torch.Tensor | None = None
        for i, (feature, mlp) in enumerate(zip(encoder_hidden_states, self.linear_projections)):
            feature = _as_map(feature)
            if out_size is None:
                out_size = tuple(feature.shape[2:])
            batch, _, height, wide = feature.shape
            block = stages - 1 - i  # HF concatenates the stages in reverse order
            w_i = fuse[:, block * width:(block + 1) * width]  # (D, D)
            weight = w_i @ mlp.proj.weight  # (D, C_i): W_i P_i
            bias = w_i @ mlp.proj.bias if mlp.proj.bias is not None else None
            tokens = nn.functional.linear(feature.flatten(2).transpose(1, 2), weight, bias)  # (B, HW, D)
            # (B, H, W, D) viewed as (B, D, H, W): a channels-last map, no copy
            mapped = tokens.view(batch, height, wide, width).permute(0, 3, 1, 2)
            if tuple(mapped.shape[2:]) != out_size:
                mapped = upsample_bilinear(mapped, out_size, self.upsample_grad_by_matmul)
            total = mapped if total is None else total + mapped
        assert total is not None
        hidden = self.activation(self.batch_norm(total))
        return self.classifier(self.dropout(hidden))


class FastSegformerModel(SegformerModel):
    """HF's encoder, returning every stage's output directly instead of collecting them through hooks.

    Why: transformers 5 records the stage outputs (and attention maps, if asked) with forward hooks
    that read a ``ContextVar``; compiling a block on its own (regional compilation) cannot trace that
    and breaks the graph at every attention call. Without requests for attentions or hidden-state
    selections, this forward runs the same stages in the same order; any other request goes to HF's.
    """

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        plain = (not kwargs.get("output_attentions")
                 and kwargs.get("output_hidden_states") in (None, True, False)
                 and kwargs.get("return_dict") in (None, True)
                 and not set(kwargs) - {"output_attentions", "output_hidden_states", "return_dict"})
        if not plain:
            return super().forward(pixel_values, **kwargs)
        hidden = pixel_values
        outputs = []
        for stage in self.stages:
            hidden = stage(hidden)
            outputs.append(hidden)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(outputs))


class TensorDropPath(SegformerDropPath):
    """HF's stochastic depth with its keep probability in a (non-saved) tensor instead of a Python float.

    Why: each block's drop probability differs (it rises linearly with depth), and the compiler
    specialises on Python numbers, so compiling the repeated blocks one by one ("regional"
    compilation, core/planning/speed.py) would recompile every block: 52 times at b5. As a tensor the
    probability is data, and all blocks of a stage share one compiled graph. Same random draws, same maths.
    """

    keep: torch.Tensor

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return hidden_states
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        random_tensor = torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device)
        return hidden_states.div(self.keep) * torch.floor(random_tensor + self.keep)


def _tensor_drop_paths(model: nn.Module) -> None:
    for module in model.modules():
        if type(module) is SegformerDropPath and module.drop_prob > 0.0:
            module.__class__ = TensorDropPath
            module.register_buffer("keep", torch.tensor(1.0 - module.drop_prob), persistent=False)


def _drop_capture_hooks(encoder: nn.Module) -> None:
    """Remove transformers' output-capturing hooks if a forward already installed them (they are
    reinstalled, should HF's own forward be asked for attentions later)."""
    for module in encoder.modules():
        for key, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__name__", "") == "output_capturing_hook":
                del module._forward_hooks[key]
    if getattr(encoder, "_output_capturing_hooks_installed", False):
        encoder._output_capturing_hooks_installed = False


def _as_map(feature: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map from a stage output; the last stage is (B, N, C) when reshape_last_stage is off."""
    if feature.ndim == 3:
        side = int(math.sqrt(feature.shape[1]))
        return feature.reshape(feature.shape[0], side, side, -1).permute(0, 3, 1, 2)
    return feature


def upsample_grad_by_matmul() -> bool:
    """True when the environment asks for the matrix-product upsampling gradient."""
    return os.environ.get(UPSAMPLE_GRAD_ENV, "").strip().lower() == "matmul"


def use_fast_path(model: Any, log: Log | None = None) -> Any:
    """Switch a SegformerForSemanticSegmentation to the fast head and SDPA attention, in place.

    Idempotent; returns the model. Anything other than HF's own head class is left alone (a
    subclass someone wrote has its own reasons)."""
    if not fast_path_enabled():
        return model
    head = getattr(model, "decode_head", None)
    if head is not None and type(head) is SegformerDecodeHead:
        head.__class__ = FastSegformerDecodeHead
    if isinstance(head, FastSegformerDecodeHead):
        head.upsample_grad_by_matmul = upsample_grad_by_matmul()
    encoder = getattr(model, "segformer", None)
    if encoder is not None and type(encoder) is SegformerModel:
        encoder.__class__ = FastSegformerModel
        _drop_capture_hooks(encoder)
    _tensor_drop_paths(model)
    _use_sdpa(model, log)
    return model


def _use_sdpa(model: Any, log: Log | None) -> None:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) == "sdpa":
        return
    try:
        model.set_attn_implementation("sdpa")
    except (AttributeError, ValueError, ImportError) as exc:
        if log is not None:
            log("info", f"fused attention is unavailable for this SegFormer; using the standard attention ({exc})")


def uses_fast_path(model: Any) -> bool:
    """Whether ``model``'s head is the fast one (benchmarks and the profile record it)."""
    return isinstance(getattr(model, "decode_head", None), FastSegformerDecodeHead)
