"""Where the time of one training step goes, by part of SegFormer, with and without the fast path.

torch.profiler over the eager training step (no CUDA graph and no compiler, so every kernel is visible
and attributable): bf16 autocast, channels_last, the module's real input normalisation, forward,
upsampling and Dice+CE loss (core/engine/lit_module.py, losses.py) and the graphed path's fused AdamW
(core/engine/step_graph.graph_optimizer). Synthetic uint8 images and random masks. Each kernel's time
goes to the innermost labelled range (module forward hooks) around the op that launched it; a backward
kernel goes to the part of the forward op whose autograd node launched it (sequence numbers), so both
directions are split into patch embeddings, attention (with its sequence reduction), Mix-FFN (with its depthwise
conv), layer norms, decode head, upsampling + loss, optimiser and the rest (residual adds, reshapes).

A third path, ``compiled``, profiles the step a long run trains (fast path, each block, the head and the
loss compiled on their own, as core/engine/lit_module.py does). The compiler fuses across the parts, so
its kernels cannot be split by part; every run is therefore also split by kind of kernel (matrix
multiplies, attention, convolutions, compiler-fused kernels, normalisation, copies, ...), and the
step's floating-point work (counted once with torch's FlopCounterMode on the eager step) turns the
matrix-multiply and attention times into achieved TFLOP/s: what is left to gain, and where.

    python benchmarks/profile_step.py                        # b5, batch 16, 288 px, fast path on and off
    python benchmarks/profile_step.py --batch 32 --paths fast,compiled   # the 16 GB+ row, eager and compiled
    python benchmarks/profile_step.py --dry-run --out /tmp/p.json   # tiny model on the CPU: a wiring check

Writes benchmarks/results/profile_b5_16_288.json (--out): ms per step per part (forward, backward),
shares, the top kernels, per kind of kernel, peak memory; a run that fails is recorded with its error,
the others kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

# the tiny architecture of --dry-run (b0-shaped, small widths)
TINY = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 48], "num_attention_heads": [1, 1, 2, 2],
        "decoder_hidden_size": 32}

PATCH, ATTENTION, FFN, NORMS, HEAD = ("patch embeddings", "attention (incl. sequence reduction)",
                                      "Mix-FFN (incl. depthwise conv)", "layer norms", "decode head")
INPUT, LOSS, OPTIMIZER, OTHER = "input normalisation", "upsampling + loss", "optimizer", "other"
PARTS = [PATCH, ATTENTION, FFN, NORMS, HEAD, INPUT, LOSS, OPTIMIZER, OTHER]
_BLOCK_NORM = re.compile(r"(layernorm_before|layernorm_after|stages\.\d+\.layer_norm)$")


def part_of(name: str, module: Any) -> str | None:
    """The part a named module stands for (None: not a boundary; its ops belong to an enclosing part)."""
    kind = type(module).__name__
    if kind == "SegformerOverlapPatchEmbeddings":
        return PATCH
    if kind == "SegformerAttention":
        return ATTENTION
    if kind == "SegformerMixMLP":
        return FFN
    if "DecodeHead" in kind:
        return HEAD
    if kind == "LayerNorm" and _BLOCK_NORM.search(name):
        return NORMS
    if kind == "LossPart":
        return LOSS
    return None


def attach_ranges(model: Any) -> list[Any]:
    """record_function ranges 'fwd|<part>' around each part's forward (its backward is found from these:
    see ``attribute``)."""
    import torch

    handles = []
    for name, module in model.named_modules():
        part = part_of(name, module)
        if part is None:
            continue
        open_ranges: list[Any] = []

        def enter(m: Any, args: Any, label: str = f"fwd|{part}", store: list = open_ranges) -> None:
            ctx = torch.profiler.record_function(label)
            ctx.__enter__()
            store.append(ctx)

        def leave(m: Any, args: Any, out: Any, store: list = open_ranges) -> None:
            if store:
                store.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def loss_part(num_classes: int) -> Any:
    """Upsampling + Dice+CE as a module, labelled by the same forward hooks as the model's parts."""
    import torch

    from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits

    class LossPart(torch.nn.Module):
        def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            return dice_ce_loss(upsample_logits(logits, tuple(masks.shape[-2:])), masks, num_classes, True)

    return LossPart()


BACKWARD_NODE = "autograd::engine::evaluate_function: "

# Kinds of kernel, by name; the first kind whose patterns match wins (cuDNN's fused attention names
# contain "gemm"-like tokens, so attention is tested first, convolutions before matrix multiplies).
KERNEL_KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("attention", ("sdpa", "flash", "fmha", "attention", "softmax")),
    ("convolution", ("conv", "dgrad", "wgrad", "fprop", "depthwise", "winograd")),
    ("matrix multiply", ("nvjet", "gemm", "cutlass", "xmma", "cublas", "sm90_", "sm80_", "ampere_", "matmul",
                         "addmm", "aten::mm", "aten::bmm", "aten::linear")),
    ("optimizer", ("multi_tensor_apply", "adam")),
    ("compiler-fused (Triton)", ("triton",)),
    ("normalisation", ("layer_norm", "batch_norm", "gammabeta", "welford", "native_layer", "native_batch")),
    ("upsampling", ("upsample",)),
    ("reductions", ("reduce", "sum")),
    ("copies and casts", ("copy", "cat", "clone", "transpose", "permute", "contiguous")),
    ("elementwise", ("elementwise", "aten::add", "aten::mul", "aten::gelu", "aten::div", "aten::relu")),
]
# the FLOP counter's operators, in the same kinds
FLOP_KINDS = {"mm": "matrix multiply", "addmm": "matrix multiply", "bmm": "matrix multiply",
              "baddbmm": "matrix multiply", "convolution": "convolution", "convolution_backward": "convolution",
              "_scaled_dot_product_efficient_attention": "attention",
              "_scaled_dot_product_flash_attention": "attention",
              "_scaled_dot_product_cudnn_attention": "attention",
              "_scaled_dot_product_efficient_attention_backward": "attention",
              "_scaled_dot_product_flash_attention_backward": "attention",
              "_scaled_dot_product_cudnn_attention_backward": "attention"}


def kernel_kind(name: str) -> str:
    """The kind of a kernel (or, on the CPU, of an operator) from its name."""
    low = name.lower()
    for kind, patterns in KERNEL_KINDS:
        if any(p in low for p in patterns):
            return kind
    return "other"


def by_kind(kernels: dict[str, float], steps: int, flops: dict[str, float] | None) -> dict[str, Any]:
    """ms per step and share per kind of kernel; TFLOP/s where the kind's FLOPs were counted."""
    total = sum(kernels.values()) or 1.0
    kinds: dict[str, float] = defaultdict(float)
    for name, t in kernels.items():
        kinds[kernel_kind(name)] += t
    out: dict[str, Any] = {}
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        ms = t / steps / 1e3
        row: dict[str, Any] = {"ms_per_step": round(ms, 3), "share": round(t / total, 4)}
        if flops and flops.get(kind) and ms > 0:
            row["tflops_per_s"] = round(flops[kind] / (ms / 1e3) / 1e12, 3)
        out[kind] = row
    return out


def attribute(events: Any, main_thread: int, on_gpu: bool) -> tuple[dict[str, float], dict[str, float]]:
    """(us per 'fwd|part' / 'bwd|part' / 'opt|part' label, us per kernel name).

    Forward: each kernel goes to the innermost labelled range above the op that launched it. Backward:
    each autograd node carries the sequence number of the forward op that created it, so its kernels go
    to that op's part, exactly (no backward hooks, whose ranges autograd's execution order blurs).
    Backward nodes of no labelled op (the loss's, gradient accumulation) are 'other'."""
    by_label: dict[str, float] = defaultdict(float)
    kernels: dict[str, float] = defaultdict(float)
    forward_part: dict[int, str] = {}

    def own_time(evt: Any) -> float:
        if on_gpu:
            for k in evt.kernels:
                kernels[k.name] += k.duration
            return sum(k.duration for k in evt.kernels)
        t = evt.self_cpu_time_total
        if not evt.cpu_children and not evt.name.startswith(("fwd|", "bwd|", "run|")):
            kernels[evt.name] += t
        return t

    def label_forward(evt: Any, label: str) -> None:
        if evt.name.startswith(BACKWARD_NODE):
            return
        if evt.name.startswith(("fwd|", "run|")):
            label = "fwd|" + evt.name.split("|", 1)[1]
        if evt.sequence_nr >= 0:
            forward_part.setdefault(evt.sequence_nr, label.split("|", 1)[1])
        for child in evt.cpu_children:
            label_forward(child, label)

    def walk(evt: Any, label: str) -> None:
        if evt.name.startswith(BACKWARD_NODE):
            label = f"bwd|{forward_part.get(evt.sequence_nr, OTHER)}"
        elif evt.name.startswith("fwd|"):
            label = evt.name
        elif evt.name.startswith("run|"):
            label = evt.name.replace("run|", "opt|" if evt.name == f"run|{OPTIMIZER}" else "fwd|", 1)
        by_label[label] += own_time(evt)
        for child in evt.cpu_children:
            walk(child, label)

    roots = [evt for evt in events if evt.cpu_parent is None]
    for evt in roots:
        if evt.thread == main_thread:
            label_forward(evt, f"fwd|{OTHER}")
    for evt in roots:
        walk(evt, f"fwd|{OTHER}" if evt.thread == main_thread else f"bwd|{OTHER}")
    return dict(by_label), dict(kernels)


def summarise(by_label: dict[str, float], kernels: dict[str, float], steps: int, top: int,
              flops: dict[str, float] | None = None) -> dict[str, Any]:
    total = sum(by_label.values()) or 1.0
    parts = {}
    for part in PARTS:
        fwd, bwd = by_label.get(f"fwd|{part}", 0.0), by_label.get(f"bwd|{part}", 0.0)
        both = fwd + bwd + by_label.get(f"opt|{part}", 0.0)  # the optimiser is neither direction
        if both:
            parts[part] = {"forward_ms": round(fwd / steps / 1e3, 3), "backward_ms": round(bwd / steps / 1e3, 3),
                           "total_ms": round(both / steps / 1e3, 3), "share": round(both / total, 4)}
    ktotal = sum(kernels.values()) or 1.0
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    return {"attributed_ms_per_step": round(total / steps / 1e3, 3), "parts": parts,
            "kernel_kinds": by_kind(kernels, steps, flops),
            "top_kernels": [{"name": n[:160], "ms_per_step": round(t / steps / 1e3, 4), "share": round(t / ktotal, 4)}
                            for n, t in ranked]}


def count_flops(args: argparse.Namespace) -> dict[str, float]:
    """FLOPs of one training step (forward and backward, fast path, eager) per kind of kernel, and in all.

    Counted on the eager step with torch's FlopCounterMode (matrix multiplies, convolutions, attention;
    elementwise work is not counted: it is memory-bound, its cost is bytes, not FLOPs). The compiler
    fuses elementwise work but keeps these operators, so the same counts hold for the compiled step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module, images, masks, loss_fn, _ = build_step(args, fast=True)
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})
    with counter:
        with torch.autocast(images.device.type, dtype=torch.bfloat16):
            loss = loss_fn(module.forward_fn(module._model_input(images)), masks)
        loss.backward()
    kinds: dict[str, float] = defaultdict(float)
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        kinds[FLOP_KINDS.get(getattr(op, "__name__", str(op)).split(".")[0], "other")] += n
    kinds["total"] = float(counter.get_total_flops())
    return dict(kinds)


def conv_backward_flops(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, _groups: Any, output_mask: Any,
                        out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs of a convolution's backward: each requested gradient (input, weight) costs what the forward does.

    Why not torch's formula: it counts the weight gradient as if the convolution had one group, so a
    depthwise convolution's (SegFormer's Mix-FFN, 1280 groups in b5's third stage) is counted 1280x too
    high; at b5 · 288 the step's convolutions came out 37x too high in all."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def build_step(args: argparse.Namespace, fast: bool) -> tuple[Any, Any, Any, Any, Any]:
    """(module, images, masks, loss part, model config): the step's pieces, on this run's device."""
    import torch
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.data.normalize import input_constants
    from medseg_gui.core.engine.fast_segformer import use_fast_path
    from medseg_gui.core.engine.lit_module import OptimSettings, SegModule
    from medseg_gui.core.engine.model import scratch_config

    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    torch.manual_seed(0)
    hf_config = scratch_config(args.variant, args.classes, **(TINY if args.dry_run else {}))
    model = SegformerForSemanticSegmentation(hf_config)
    if fast:
        use_fast_path(model)
    module = SegModule(model, args.classes, OptimSettings()).to(device)
    module.train()
    module._norm = input_constants(device)
    if device.type == "cuda":
        module.model.to(memory_format=torch.channels_last)
    gen = torch.Generator(device="cpu").manual_seed(1)
    images = torch.randint(0, 256, (args.batch, 1, args.size, args.size), dtype=torch.uint8, generator=gen).to(device)
    masks = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=gen).to(device)
    return module, images, masks, loss_part(args.classes), hf_config


def profile_one(args: argparse.Namespace, path: str, flops: dict[str, float] | None = None) -> dict[str, Any]:
    """Profile one path: ``fast`` / ``hf`` eager (split by part and by kind of kernel) or ``compiled``
    (the fast path compiled region by region as a long run trains it; split by kind of kernel only)."""
    import threading

    import torch

    from medseg_gui.core.engine import step_graph
    from medseg_gui.core.engine.fast_segformer import uses_fast_path
    from medseg_gui.core.planning import speed

    compiled = path == "compiled"
    module, images, masks, loss_fn, hf_config = build_step(args, fast=path != "hf")
    model, device = module.model, images.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    optimizer = step_graph.graph_optimizer(module.parameters(), 3e-4, 1e-2, device)
    compile_s = None
    if compiled:
        # as the app's regional compilation inside the whole-step graph (mode "default": inductor fuses,
        # our graph replays); on the CPU dry run the "aot_eager" backend checks the wiring without a C++ build
        backend = "aot_eager" if args.dry_run else "inductor"
        speed.prepare_compiler()
        speed.compile_regions(model, "default", backend=backend)
        loss_fn = torch.compile(loss_fn, dynamic=False, backend=backend)

    def step() -> None:
        with torch.profiler.record_function(f"run|{INPUT}"):
            x = module._model_input(images)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(module.forward_fn(x), masks)
        loss.backward()
        with torch.profiler.record_function(f"run|{OPTIMIZER}"):
            optimizer.step()
            # as the app's graphed single-GPU step (core/engine/step_graph.py): the backward writes fresh
            # gradients; zeroing in place would add a fill and an accumulating add per parameter
            optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    if compiled:
        compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    plain_ms = (time.perf_counter() - t) / max(1, args.warmup) * 1e3  # without hooks or profiler
    handles = [] if compiled else attach_ranges(module.model) + attach_ranges(loss_fn)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    main_thread = None
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync()
    for h in handles:
        h.remove()
    events = prof.events()
    main_thread = next((e.thread for e in events if e.name == f"run|{INPUT}"), threading.get_ident())
    by_label, kernels = attribute(events, main_thread, device.type == "cuda")
    out = summarise(by_label, kernels, args.steps, args.top, flops)
    if device.type == "cuda":
        # how many kernels one step launches, and the median one's length: a step of thousands of
        # kernels of a few microseconds each has a floor that a larger batch amortises and accumulation does not
        durations = sorted(k.duration for e in events for k in e.kernels)  # the kernels ``attribute`` counts
        out["kernels_per_step"] = round(len(durations) / args.steps)
        out["median_kernel_us"] = round(durations[len(durations) // 2], 1) if durations else None
    if compiled:
        speed.uncompile_regions(model)
        del out["parts"]  # fused kernels span the parts; the kinds of kernel are the split
        out["compile_and_warmup_s"] = round(compile_s or 0.0, 1)
    if flops and flops.get("total"):
        out["step_tflops_per_s_unprofiled"] = round(flops["total"] / (plain_ms / 1e3) / 1e12, 3)
        out["step_tflops_per_s_gpu_busy"] = round(flops["total"] / (out["attributed_ms_per_step"] / 1e3) / 1e12, 3)
    out.update(fast_path=uses_fast_path(model), attn_implementation=getattr(hf_config, "_attn_implementation", None),
               step_ms_unprofiled=round(plain_ms, 3), images_per_s_unprofiled=round(args.batch / plain_ms * 1e3, 1),
               device=str(device), peak_allocated_gib=(torch.cuda.max_memory_allocated() / 2**30
                                                      if device.type == "cuda" else None))
    return out


def check_equivalence(args: argparse.Namespace) -> dict[str, Any]:
    """Fast path vs transformers' modules on this device, same weights, channels_last, train mode without
    dropout: max |logits difference| in fp32 and under bf16 autocast, and of the gradients (fp32)."""
    import copy

    import torch
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.engine.fast_segformer import use_fast_path
    from medseg_gui.core.engine.model import scratch_config

    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    torch.manual_seed(0)
    hf_config = scratch_config(args.variant, args.classes, classifier_dropout_prob=0.0, drop_path_rate=0.0,
                               **(TINY if args.dry_run else {}))
    hf = SegformerForSemanticSegmentation(hf_config).to(device).train()
    fast = use_fast_path(copy.deepcopy(hf))
    if device.type == "cuda":
        hf.to(memory_format=torch.channels_last), fast.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, args.size, args.size, device=device).contiguous(
        memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format)
    out: dict[str, Any] = {}
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # true fp32
    try:
        a, b = hf(pixel_values=x).logits, fast(pixel_values=x).logits
        out["fp32_max_abs_diff"] = float((a - b).detach().abs().max())
        out["fp32_logits_max_abs"] = float(a.detach().abs().max())
        a.square().mean().backward()
        b.square().mean().backward()
        grads = dict(hf.named_parameters())
        scale = max(float(g.grad.abs().max()) for g in grads.values())
        out["fp32_grad_max_abs_diff_rel_to_max_grad"] = max(
            float((p.grad - grads[n].grad).abs().max()) for n, p in fast.named_parameters()) / scale
        with torch.autocast(device.type, dtype=torch.bfloat16), torch.no_grad():
            a, b = hf(pixel_values=x).logits.float(), fast(pixel_values=x).logits.float()
        out["bf16_max_abs_diff"] = float((a - b).abs().max())
        out["bf16_logits_max_abs"] = float(a.abs().max())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev_tf32
    return out


def compare(runs: dict[str, Any]) -> dict[str, Any]:
    """ms saved per part by the fast path (positive: faster)."""
    fast, hf = runs.get("fast", {}), runs.get("hf", {})
    if "parts" not in fast or "parts" not in hf:
        return {}
    return {p: round(hf["parts"].get(p, {}).get("total_ms", 0.0) - fast["parts"].get(p, {}).get("total_ms", 0.0), 3)
            for p in PARTS if p in hf["parts"] or p in fast["parts"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="b5")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="profiled steps")
    p.add_argument("--warmup", type=int, default=5, help="steps before (also timed without the profiler)")
    p.add_argument("--paths", default="fast,hf", help="fast (our fast path), hf (transformers' modules), "
                                                       "compiled (the fast path compiled as long runs train it)")
    p.add_argument("--top", type=int, default=25, help="kernels listed")
    p.add_argument("--budget-s", type=float, default=300, help="start no new path after this many seconds")
    p.add_argument("--dry-run", action="store_true", help="tiny model, batch 2, 64 px, on the CPU")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.dry_run:
        args.batch, args.size, args.steps, args.warmup = 2, 64, 1, 1
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"profile_{args.variant}_{args.batch}_{args.size}.json")

    import torch

    doc: dict[str, Any] = {"benchmark": "profile_step", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "host": platform.node(), "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                           "case": {"variant": args.variant, "batch": args.batch, "image_size": args.size,
                                    "classes": args.classes, "steps": args.steps, "dry_run": args.dry_run,
                                    "precision": "bf16 autocast", "channels_last": True, "graph": False,
                                    "compile": "compiled" in args.paths.split(","),
                                    "upsample_grad": os.environ.get("MEDSEG_UPSAMPLE_GRAD", "pytorch")},
                           "runs": {}}
    start = time.perf_counter()
    try:
        doc["equivalence"] = check_equivalence(args)
        print(f"fast path vs transformers on {doc['gpu']}: {doc['equivalence']}", flush=True)
    except Exception as exc:  # noqa: BLE001 — recorded; the profile still runs
        doc["equivalence"] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        print(f"equivalence check FAILED: {doc['equivalence']['error']}", flush=True)
    try:
        doc["flops_per_step"] = count_flops(args)
        print(f"FLOPs per step: {doc['flops_per_step']}", flush=True)
    except Exception as exc:  # noqa: BLE001 — recorded; the profile still runs, without TFLOP/s
        doc["flops_per_step"] = {"error": f"{type(exc).__name__}: {exc}"}
    flops = None if "error" in doc["flops_per_step"] else doc["flops_per_step"]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    for path in [x for x in args.paths.split(",") if x]:
        if time.perf_counter() - start > args.budget_s:
            doc["runs"][path] = {"error": f"skipped: the {args.budget_s:g} s budget was spent"}
            continue
        print(f"profiling {args.variant}-{args.batch}-{args.size} path={path} ...", flush=True)
        try:
            doc["runs"][path] = profile_one(args, path, flops)
        except Exception as exc:  # noqa: BLE001 — recorded; the other path still runs
            doc["runs"][path] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        run = doc["runs"][path]
        if "kernel_kinds" in run:
            print(f"  {run['step_ms_unprofiled']:.1f} ms/step unprofiled ({run['images_per_s_unprofiled']} img/s), "
                  f"{run['attributed_ms_per_step']:.1f} ms attributed", flush=True)
            for part, v in run.get("parts", {}).items():
                print(f"    {part:<40} fwd {v['forward_ms']:8.2f}  bwd {v['backward_ms']:8.2f}  "
                      f"{100 * v['share']:5.1f} %", flush=True)
            for kind, v in run["kernel_kinds"].items():
                rate = f"  {v['tflops_per_s']:7.1f} TFLOP/s" if "tflops_per_s" in v else ""
                print(f"    [{kind:<26}] {v['ms_per_step']:8.2f} ms  {100 * v['share']:5.1f} %{rate}", flush=True)
        else:
            print(f"  FAILED: {run['error']}", flush=True)
        doc["fast_path_saves_ms"] = compare(doc["runs"])
        write_results(out, doc)
    print(f"wrote {out}", flush=True)
    failed = [r for r in [*doc["runs"].values(), doc["equivalence"]] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
