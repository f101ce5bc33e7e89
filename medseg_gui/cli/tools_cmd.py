"""`medseg lr-find`, `medseg benchmark`, `medseg preflight`: the planning tools as commands.

Each takes the run's configuration from ``--config FILE`` or ``--demo`` (the configuration recommended
for this machine on the built-in demo dataset, as ``medseg train --demo``), so what is measured or
checked is exactly what ``medseg train`` would run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medseg_gui.cli.common import fail, print_json


def _source_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="run configuration TOML (see `medseg config default`)")
    src.add_argument("--demo", action="store_true",
                     help="the configuration recommended for this machine, on the built-in demo dataset")
    p.add_argument("--dataset", metavar="PATH", help="use this dataset folder instead of the config's")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lr-find", help="find a learning rate (Lightning's LR range test, nothing saved)")
    _source_args(p)
    p.add_argument("--steps", type=int, default=100, metavar="N", help="batches in the LR sweep (default 100)")
    p.add_argument("--min-lr", type=float, default=1e-7)
    p.add_argument("--max-lr", type=float, default=1.0)
    p.add_argument("--save", metavar="FILE", help="write the config with the suggested LR to FILE (TOML)")
    p.add_argument("--force", action="store_true", help="with --save: replace FILE if it exists")
    p.set_defaults(handler=run_lr_find)

    p = sub.add_parser("benchmark", help="time real training steps; estimate time per epoch and per run")
    _source_args(p)
    p.add_argument("--steps", type=int, default=20, metavar="N", help="measured training steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="unmeasured warm-up steps (default 5)")
    p.add_argument("--estimate", action="store_true",
                   help="do not train: show the last measurement of this config, or the bandwidth estimate")
    p.set_defaults(handler=run_benchmark)

    p = sub.add_parser("preflight", help="check everything before training (exit 1 if anything fails)")
    _source_args(p)
    p.add_argument("--quick", action="store_true", help="skip reading the dataset's files (folder check only)")
    p.set_defaults(handler=run_preflight)


def load_config(args: argparse.Namespace) -> Any:
    """The config of ``--config`` or ``--demo`` plus ``--dataset``; ConfigError names file and fields."""
    from medseg_gui.core import config as cfg
    if args.config:
        config = cfg.load(args.config)
    else:
        from medseg_gui.cli.train_cmd import demo_config

        config = demo_config()
    if args.dataset:
        cfg.set_value(config, "dataset.path", args.dataset)
    return config


def _progress(label: str, enabled: bool):
    """A one-line counter on stderr for people at a terminal; nothing in --json mode or when piped."""
    if not enabled or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\r{label}: batch {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return show


def _config_or_fail(args: argparse.Namespace) -> tuple[Any, int | None]:
    from medseg_gui.core.config import ConfigError

    try:
        return load_config(args), None
    except ConfigError as exc:
        return None, fail(str(exc), "fix the named settings")


def run_lr_find(args: argparse.Namespace) -> int:
    from medseg_gui.core import config as cfg
    from medseg_gui.core.tools.lr_find import apply_lr, find_lr
    from medseg_gui.core.tools.trial_run import ToolError

    config, code = _config_or_fail(args)
    if config is None:
        return code
    if args.steps < 2:
        return fail("--steps must be at least 2")
    if not 0 < args.min_lr < args.max_lr:
        return fail("--min-lr must be above 0 and below --max-lr")
    if args.save:  # refuse now, not after the sweep
        from medseg_gui.core.output_guard import file_target_problem

        problem = file_target_problem(args.save, replace=args.force)
        if problem:
            return fail(problem)
    try:
        result = find_lr(config, num_training=args.steps, min_lr=args.min_lr, max_lr=args.max_lr,
                         progress=_progress("lr-find", not args.json))
    except ToolError as exc:
        return fail(str(exc), "check the configuration (medseg config validate) and the dataset (medseg data check)")
    saved = None
    if args.save and result.suggestion is not None:
        from medseg_gui.core.output_guard import os_error_line

        try:
            saved = str(cfg.save(apply_lr(config, result.suggestion), Path(args.save).expanduser()))
        except OSError as exc:
            return fail(os_error_line(exc, args.save))
    if args.json:
        data = result.to_dict()
        data["saved_config"] = saved
        print_json(data)
        return 0
    print(result.message)
    if result.lrs:
        print(f"{'learning rate':>14}  loss (smoothed)")
        stride = max(1, len(result.lrs) // 15)
        for i in range(0, len(result.lrs), stride):
            mark = "  <- suggestion" if result.suggestion is not None and result.lrs[i] == result.suggestion else ""
            print(f"{result.lrs[i]:>14.2e}  {result.losses[i]:.4f}{mark}")
    if result.suggestion is not None:
        print(f"current training.lr = {config.training.lr:g}; suggested {result.suggestion:.2e}")
        if saved:
            print(f"saved the config with the suggested LR to {saved}")
        elif not args.save:
            print("use --save FILE to write the config with this LR")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from medseg_gui.core.tools import benchmark as bm
    from medseg_gui.core.tools.trial_run import ToolError

    config, code = _config_or_fail(args)
    if config is None:
        return code
    if args.estimate:
        return _show_estimate(args, config)
    if args.steps < 1 or args.warmup < 1:
        return fail("--steps and --warmup must be at least 1")
    try:
        result = bm.run_benchmark(config, steps=args.steps, warmup=args.warmup,
                                  progress=_progress("benchmark", not args.json))
    except ToolError as exc:
        return fail(str(exc), "check the configuration (medseg config validate) and the dataset (medseg data check)")
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    return 0


def _show_estimate(args: argparse.Namespace, config: Any) -> int:
    """No training: the cached measurement for this GPU + config, or the bandwidth-scaled estimate."""
    from medseg_gui.core.tools import benchmark as bm
    from medseg_gui.core.gpu_identity import GpuSelectionError, training_gpu
    from medseg_gui.core.hardware import probe

    tr = config.training
    try:  # the card the run will train on (training.gpus), as the session picks it
        gpu = training_gpu(probe(), tr.gpus, tr.devices) if tr.accelerator != "cpu" else None
    except GpuSelectionError as exc:
        return fail(f"training.gpus: {exc}", "set training.gpus to a GPU listed by medseg hardware (or leave it empty)")
    result = bm.known_speed(config, gpu)
    if result is None:
        message = ("no measurement yet and no estimate for " + (gpu.name if gpu else "the CPU")
                   + ": run `medseg benchmark` without --estimate")
        if args.json:
            print_json({"kind": None, "message": message})
        else:
            print(message)
        return 0
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary())
    return 0


def run_preflight(args: argparse.Namespace) -> int:
    from medseg_gui.core.tools.preflight import preflight

    config, code = _config_or_fail(args)
    if config is None:
        return code
    report = preflight(config, check_dataset_files=not args.quick)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.text())
    return 0 if report.ok else 1
