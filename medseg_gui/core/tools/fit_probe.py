"""Fit probe: a few real training + validation steps on this GPU, in a child process, to find the
largest batch that fits — for when a user wants certainty beyond the memory model's prediction.

Why a child process: the CUDA context and the allocator's cache are only really freed when the
process ends, so the GUI (or a later probe) starts clean, and an out-of-memory inside a probe cannot
leave the caller's CUDA state broken. Results are cached per GPU model + driver + settings.

The step is ours (model builder, device normalisation, channels_last, fused AdamW, autocast and
GradScaler, logits upsampled, Dice + CE), eager; for a compiled run the calibrated compiled
overhead (core/planning/memory.py) is added to the measured peak.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from medseg_gui.core.atomic import atomic_write_text
from medseg_gui.core.config import RunConfig
from medseg_gui.core.data.normalize import to_model_input
from medseg_gui.core.engine.model import build_model
from medseg_gui.core.hardware import GpuInfo
from medseg_gui.core.paths import cache_dir
from medseg_gui.core.planning.memory import default_memory_model

GIB = 2**30


@dataclass
class Trial:
    batch_size: int
    fits: bool
    peak_gb: float | None = None  # allocator peak + CUDA context, as nvidia-smi would show
    detail: str = ""


@dataclass
class FitProbeResult:
    largest_batch: int  # 0: not even batch 1 fits (or nothing could be probed)
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_step(variant: str, batch: int, size: int, precision: str, classes: int, steps: int = 3,
               device: str = "cuda", budget_gb: float | None = None) -> dict[str, Any]:
    """Run ``steps`` training steps and one validation step; report peaks or an OOM. In-process."""
    import torch

    from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits

    cuda = device.startswith("cuda")
    if cuda and budget_gb is not None:  # simulate a smaller card (the context is counted separately)
        total = torch.cuda.get_device_properties(0).total_memory / GIB
        torch.cuda.set_per_process_memory_fraction(min(1.0, max(0.01, budget_gb / total)))
    cfg = RunConfig()
    cfg.training.variant, cfg.training.pretrained = variant, "scratch"
    cfg.dataset.num_classes = classes
    cfg.dataset.class_names = [str(i) for i in range(classes)]
    out: dict[str, Any] = {"batch": batch, "fits": False}
    model = opt = None
    try:
        model = build_model(cfg).to(device).train()
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=cuda or None)
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision) if cuda else None
        scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
        images = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8, device=device)
        masks = torch.randint(0, classes, (batch, size, size), dtype=torch.long, device=device)

        def loss_of():
            x = to_model_input(images)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
                return dice_ce_loss(upsample_logits(model(pixel_values=x).logits, (size, size)), masks, classes)

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(steps):
            scaler.scale(loss_of()).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
            out["train_step_s"] = (time.perf_counter() - t) / steps
            out["train_peak_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB
            out["reserved_gb"] = torch.cuda.max_memory_reserved() / GIB
            torch.cuda.reset_peak_memory_stats()
        model.eval()
        with torch.no_grad():
            loss_of()
        out["fits"] = True
        if cuda:
            torch.cuda.synchronize()
            out["val_peak_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB
            out["reserved_gb"] = max(out["reserved_gb"], torch.cuda.max_memory_reserved() / GIB)
    except torch.OutOfMemoryError as exc:
        out["detail"] = str(exc).splitlines()[0][:200]
    finally:
        model = opt = None  # drop the references before collecting (the probe may run in-process)
        gc.collect()
    return out


def _child(args: argparse.Namespace) -> None:
    """Entry of the probe's child process: one batch size, one JSON line on stdout."""
    result = probe_step(args.variant, args.batch, args.size, args.precision, args.classes, args.steps,
                        args.device, args.budget_gb)
    print("PROBE " + json.dumps(result), flush=True)


def run_child(config: RunConfig, batch: int, *, steps: int = 3, device: str = "cuda",
              budget_gb: float | None = None, timeout_s: float = 300, gpu_uuid: str | None = None) -> dict[str, Any]:
    """One probe in a fresh Python process (its VRAM is freed when it exits); ``gpu_uuid``: the card to
    probe, made the child's only CUDA device (else the child's cuda:0 may be another card)."""
    tr, ds = config.training, config.dataset
    cmd = [sys.executable, "-m", "medseg_gui.core.tools.fit_probe", "--variant", tr.variant, "--batch", str(batch),
           "--size", str(ds.image_size), "--precision", tr.precision, "--classes", str(ds.num_classes),
           "--steps", str(steps), "--device", device]
    if budget_gb is not None:
        cmd += ["--budget-gb", str(budget_gb)]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    if gpu_uuid:
        env["CUDA_VISIBLE_DEVICES"] = gpu_uuid
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"batch": batch, "fits": False, "detail": f"probe timed out after {timeout_s:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"batch": batch, "fits": False, "error": True, "detail": tail[0][:300]}


def _cache_path(config: RunConfig, gpu: GpuInfo | None, driver: str | None, budget_gb: float | None):
    tr, ds = config.training, config.dataset
    key = json.dumps([gpu.name if gpu else "cpu", driver, tr.variant, ds.image_size, ds.num_classes,
                      tr.precision, tr.compile, round(budget_gb or 0, 2)])
    return cache_dir("fit-probe") / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")


def probe_fit(config: RunConfig, gpu: GpuInfo | None, *, driver: str | None = None, budget_gb: float | None = None,
              start: int | None = None, limit: int = 256, max_trials: int = 7, use_cache: bool = True,
              run_one: Callable[[int], dict[str, Any]] | None = None,
              progress: Callable[[str], None] | None = None) -> FitProbeResult:
    """Largest batch that trains and validates at the config's model, size and precision.

    Binary search between a batch known to fit and one known not to, starting at ``start`` (the
    recommendation's batch), doubling up or halving down to bracket it first; at most ``max_trials``
    child processes. ``run_one`` replaces the child process (tests).
    """
    if gpu is None and run_one is None:
        return FitProbeResult(0, message="no NVIDIA GPU: the fit probe measures VRAM and needs one")
    path = _cache_path(config, gpu, driver, budget_gb)
    if use_cache and path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return FitProbeResult(data["largest_batch"], [Trial(**t) for t in data["trials"]], True,
                                  data["message"] + " (cached)")
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    context = _context_gb(config)
    allocator_budget = None if budget_gb is None else budget_gb - context
    runner = run_one or (lambda b: run_child(config, b, budget_gb=allocator_budget,
                                             gpu_uuid=gpu.uuid if gpu is not None else None))
    trials: list[Trial] = []

    def attempt(batch: int) -> bool:
        if progress:
            progress(f"probing batch {batch}…")
        r = runner(batch)
        peak = r["reserved_gb"] + context if r.get("reserved_gb") is not None else None
        trials.append(Trial(batch, bool(r.get("fits")), peak, r.get("detail", "")))
        if r.get("error"):
            raise RuntimeError(r.get("detail", "probe failed"))
        return bool(r.get("fits"))

    good, bad = 0, limit + 1
    batch = max(1, min(start or 1, limit))
    try:
        while len(trials) < max_trials and bad - good > 1:
            if attempt(batch):
                good = batch
                batch = min(batch * 2, limit) if bad > limit else (good + bad) // 2
                if good == limit:
                    break
            else:
                bad = batch
                batch = max(1, batch // 2) if good == 0 else (good + bad) // 2
    except RuntimeError as exc:
        return FitProbeResult(good, trials, False, f"the probe failed: {exc}")
    if good == 0:
        message = "not even batch 1 fits at these settings: choose a smaller model or image size"
    elif bad - good > 1:
        message = f"batch {good} fits (search stopped after {len(trials)} probes; {bad - 1} may fit too)"
    else:
        message = f"batch {good} fits, {bad} does not" if bad <= limit else f"batch {good} fits (the limit)"
    result = FitProbeResult(good, trials, False, message)
    _write_cache(path, result)
    return result


def apply_probe(rec: Any, result: FitProbeResult) -> None:
    """Take the probe's batch into a Recommendation (keeping its effective batch) and say so."""
    tr = rec.config.training
    if result.largest_batch <= 0:
        rec.warnings.append(f"fit probe: {result.message}")
        return
    effective = tr.batch_size * tr.accumulate_grad_batches
    peak = next((t.peak_gb for t in result.trials if t.batch_size == result.largest_batch), None)
    if result.largest_batch < tr.batch_size:
        rec.warnings.append(f"fit probe: only batch {result.largest_batch} fits, not the predicted {tr.batch_size}")
        tr.batch_size = result.largest_batch
        tr.accumulate_grad_batches = max(1, -(-effective // tr.batch_size))
    rec.reasons.append(f"Fit probe on this GPU: {result.message}"
                       + (f"; measured peak {peak:.1f} GB" if peak else "") + ".")


def _context_gb(config: RunConfig) -> float:
    model = default_memory_model()
    extra = 0.0
    if model is not None and config.training.compile != "off":
        extra = max((offset for _, offset in model.compiled.values()), default=0.0)
    return (model.context_gb if model is not None else 0.0) + extra


def _write_cache(path, result: FitProbeResult) -> None:
    atomic_write_text(path, json.dumps(result.to_dict()))


def main(argv: list[str] | None = None) -> None:
    from medseg_gui.core.config import choices_of

    p = argparse.ArgumentParser(description="one fit-probe child (internal)")
    p.add_argument("--variant", required=True, choices=choices_of("training.variant"))
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-gb", type=float, default=None)
    _child(p.parse_args(argv))


if __name__ == "__main__":
    main()
