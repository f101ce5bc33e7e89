"""Where the time of one training step goes, by part of SegFormer, with and without the fast path.

torch.profiler over the eager training step (no CUDA graph and no compiler, so every kernel is visible
and attributable): bf16 autocast, channels_last, the module's real input normalisation, forward,
upsampling and Dice+CE loss (core/engine/lit_module.py, losses.py) and the graphed path's fused AdamW
(core/engine/step_graph.graph_optimizer). Synthetic uint8 images and random masks. Each kernel's time
goes to the innermost labelled range (module forward hooks) around the op that launched it; a backward
kernel goes to the part of the forward op whose autograd node launched it (sequence numbers), so both
directions are split into patch embeddings, attention (with its sequence reduction), Mix-FFN (with its depthwise
conv), layer norms, decode head, upsampling + loss, optimiser and the rest (residual adds, reshapes).

    python benchmarks/profile_step.py                        # b5, batch 16, 288 px, fast path on and off
    python benchmarks/profile_step.py --dry-run --out /tmp/p.json   # tiny model on the CPU: a wiring check

Writes benchmarks/results/profile_b5_16_288.json (--out): ms per step per part (forward, backward),
shares, the top kernels, peak memory; a run that fails is recorded with its error, the others kept.
"""

from __future__ import annotations

import argparse
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


def summarise(by_label: dict[str, float], kernels: dict[str, float], steps: int, top: int) -> dict[str, Any]:
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
            "top_kernels": [{"name": n[:160], "ms_per_step": round(t / steps / 1e3, 4), "share": round(t / ktotal, 4)}
                            for n, t in ranked]}


def profile_one(args: argparse.Namespace, fast: bool) -> dict[str, Any]:
    import threading

    import torch

    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core.data.normalize import input_constants
    from medseg_gui.core.engine import step_graph
    from medseg_gui.core.engine.fast_segformer import use_fast_path, uses_fast_path
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
        torch.cuda.reset_peak_memory_stats()
    optimizer = step_graph.graph_optimizer(module.parameters(), 3e-4, 1e-2, device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    images = torch.randint(0, 256, (args.batch, 1, args.size, args.size), dtype=torch.uint8, generator=gen).to(device)
    masks = torch.randint(0, args.classes, (args.batch, args.size, args.size), generator=gen).to(device)
    loss_fn = loss_part(args.classes)

    def step() -> None:
        with torch.profiler.record_function(f"run|{INPUT}"):
            x = module._model_input(images)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(module.forward_fn(x), masks)
        loss.backward()
        with torch.profiler.record_function(f"run|{OPTIMIZER}"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    plain_ms = (time.perf_counter() - t) / max(1, args.warmup) * 1e3  # without hooks or profiler
    handles = attach_ranges(module.model) + attach_ranges(loss_fn)
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
    out = summarise(by_label, kernels, args.steps, args.top)
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
    p.add_argument("--paths", default="fast,hf", help="fast (our fast path), hf (transformers' modules)")
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
                                    "compile": False}, "runs": {}}
    start = time.perf_counter()
    try:
        doc["equivalence"] = check_equivalence(args)
        print(f"fast path vs transformers on {doc['gpu']}: {doc['equivalence']}", flush=True)
    except Exception as exc:  # noqa: BLE001 — recorded; the profile still runs
        doc["equivalence"] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        print(f"equivalence check FAILED: {doc['equivalence']['error']}", flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    for path in [x for x in args.paths.split(",") if x]:
        if time.perf_counter() - start > args.budget_s:
            doc["runs"][path] = {"error": f"skipped: the {args.budget_s:g} s budget was spent"}
            continue
        print(f"profiling {args.variant}-{args.batch}-{args.size} path={path} ...", flush=True)
        try:
            doc["runs"][path] = profile_one(args, fast=path == "fast")
        except Exception as exc:  # noqa: BLE001 — recorded; the other path still runs
            doc["runs"][path] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        run = doc["runs"][path]
        if "parts" in run:
            print(f"  {run['step_ms_unprofiled']:.1f} ms/step unprofiled ({run['images_per_s_unprofiled']} img/s), "
                  f"{run['attributed_ms_per_step']:.1f} ms attributed", flush=True)
            for part, v in run["parts"].items():
                print(f"    {part:<40} fwd {v['forward_ms']:8.2f}  bwd {v['backward_ms']:8.2f}  "
                      f"{100 * v['share']:5.1f} %", flush=True)
        else:
            print(f"  FAILED: {run['error']}", flush=True)
        doc["fast_path_saves_ms"] = compare(doc["runs"])
        write_results(out, doc)
    print(f"wrote {out}", flush=True)
    failed = [r for r in [*doc["runs"].values(), doc["equivalence"]] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
