"""`medseg hardware` and `medseg recommend`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from medseg_gui.cli.common import fail, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="show GPUs (via NVML), CPU and RAM")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--processes", action="store_true", help="also list other programs using each GPU")
    p.set_defaults(handler=run_hardware)

    p = sub.add_parser("recommend", help="recommend a training configuration that fits the GPU")
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", default=None, metavar="GPU",
                     help="plan for this GPU: its CUDA index (as `medseg hardware` numbers it) or UUID "
                          "(default: the one with the most free memory)")
    gpu.add_argument("--gpus", default=None, metavar="LIST",
                     help="plan for training on several GPUs, e.g. 0,1 or GPU-ab12,GPU-cd34: the per-GPU batch "
                          "is sized for the one with the least free memory")
    p.add_argument("--vram-gb", type=float, default=None,
                   help="what-if: plan for this much free VRAM instead of reading the card (0 = no GPU)")
    p.add_argument("--dataset", default=None, help="dataset folder, to adapt classes and image size")
    p.add_argument("--save", default=None, metavar="FILE", help="write the recommended config as TOML")
    p.add_argument("--force", action="store_true", help="with --save: replace FILE if it exists")
    p.add_argument("--probe", action="store_true",
                   help="check the batch with real training steps on the GPU (child process; cached)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_recommend)


def run_hardware(args: argparse.Namespace) -> int:
    from medseg_gui.core.hardware import probe

    snap = probe(with_processes=args.processes)
    if args.json:
        print_json(snap.to_dict())
        return 0
    print(f"CPU: {snap.cpu_name} ({snap.cpu_count} cores), RAM "
          f"{_gb(snap.ram_available_gb)} free of {_gb(snap.ram_total_gb)}")
    if not snap.gpus:
        print(f"GPU: none ({snap.nvml_error or 'no NVIDIA GPU found'})")
        return 0
    from medseg_gui.core.gpu_identity import by_cuda_index, gpu_label

    print(f"NVIDIA driver {snap.driver_version or 'n/a'}, CUDA {snap.cuda_driver_version or 'n/a'}")
    if snap.cuda_visible_devices is not None or len(snap.gpus) > 1:
        print(f"GPU numbers are CUDA's, as training uses them (CUDA_VISIBLE_DEVICES="
              f"{snap.cuda_visible_devices if snap.cuda_visible_devices is not None else 'unset'}, "
              f"CUDA_DEVICE_ORDER={snap.cuda_device_order}); nvidia-smi's number is shown as #N")
    for g in by_cuda_index(snap.gpus):
        cc = f"{g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else "n/a"
        print(f"{gpu_label(g)}: {g.name}  VRAM {_gb(g.free_gb)} free of {_gb(g.total_gb)}  "
              f"util {_num(g.utilization_pct, '%')}  {_num(g.temperature_c, ' C')}  "
              f"{_num(g.power_w, ' W')}  compute {cc}  nvidia-smi #{g.index}  {g.uuid or 'no UUID'}")
        for proc in g.processes:
            print(f"    pid {proc.pid} {proc.name}: {_gb(proc.used_gb)}")
    return 0


def run_recommend(args: argparse.Namespace) -> int:
    from medseg_gui.core.hardware import probe
    from medseg_gui.core.planning.recommend import recommend

    if args.vram_gb is not None and not (math.isfinite(args.vram_gb) and args.vram_gb >= 0):
        return fail(f"--vram-gb {args.vram_gb} is not a size; give the GPU memory in GB, 0 or more (e.g. 24)")
    if args.save:
        from medseg_gui.core.output_guard import file_target_problem

        problem = file_target_problem(args.save, replace=args.force)
        if problem:
            return fail(problem)
    snap = probe()
    summary = None
    if args.dataset:
        from medseg_gui.cli.dataset_summary import summarize_for_recommendation

        summary, problem = summarize_for_recommendation(args.dataset)
        if problem:
            return fail(problem, "run `medseg data check` on the folder for the full report")
    try:
        from medseg_gui.core.gpu_identity import parse_gpu_list

        gpus = parse_gpu_list(args.gpus) if args.gpus is not None else None
        if gpus is not None and not gpus:
            return fail("--gpus is empty; name GPUs by CUDA index or UUID, e.g. --gpus 0,1")
        if (args.gpu is not None or gpus) and args.vram_gb is not None:
            return fail("--vram-gb plans for an imaginary card; it cannot be combined with --gpu/--gpus")
        rec = recommend(snap, gpu_index=args.gpu, vram_gb=args.vram_gb, dataset=summary, gpus=gpus)
    except ValueError as exc:
        return fail(str(exc), "see `medseg hardware` for the GPUs CUDA can use")
    if args.dataset:
        rec.config.dataset.path = args.dataset
    probe = None
    if args.probe:
        from medseg_gui.core.tools.fit_probe import apply_probe, probe_fit

        if rec.gpu is None or rec.budget_gb is None:
            rec.warnings.append("fit probe skipped: it runs on a real GPU (not for --vram-gb what-ifs or the CPU)")
        else:
            probe = probe_fit(rec.config, rec.gpu, driver=snap.driver_version, start=rec.config.training.batch_size,
                              budget_gb=rec.budget_gb, progress=lambda m: print(m, file=sys.stderr))
            apply_probe(rec, probe)
    if args.save:
        from medseg_gui.core.config import save
        from medseg_gui.core.output_guard import os_error_line

        try:
            save(rec.config, Path(args.save).expanduser())
        except OSError as exc:
            return fail(os_error_line(exc, args.save))
    if args.json:
        print_json(dict(rec.to_dict(), fit_probe=probe.to_dict() if probe else None))
        return 0
    d = rec.to_dict()
    print(f"Recommended: SegFormer-{d['variant']}, batch {d['batch_size']}"
          + (f" x {d['accumulate_grad_batches']} accumulation" if d["accumulate_grad_batches"] > 1 else "")
          + f", {d['image_size']} px, {d['epochs']} epochs, lr {d['lr']:g}, precision {d['precision']}")
    print(f"Tier: {rec.tier.label}")
    if rec.gpus:
        from medseg_gui.core.gpu_identity import gpu_description

        print("Train on: " + "; ".join(gpu_description(g) for g in rec.gpus)
              + f"  (training.gpus = {rec.config.training.gpus})")
    for reason in rec.reasons:
        print(f"  - {reason}")
    for warning in rec.warnings:
        print(f"  ! {warning}")
    if args.save:
        print(f"Saved to {args.save}")
    return 0


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} GB"


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.0f}{unit}"
