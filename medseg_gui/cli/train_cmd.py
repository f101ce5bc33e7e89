"""`medseg train`: run a training session headless, with a progress bar or JSON-lines events.

``--events-json`` prints one event per line on stdout for the GUI's child-process transport (used for
several GPUs, where Lightning's DDP re-executes the command line). Everything else that would reach
stdout — library prints, DDP child processes — is redirected to stderr so the stream stays parseable.
Stop cooperatively with Ctrl-C (SIGINT), SIGBREAK on Windows, or a line ``stop`` on stdin with
``--stop-on-stdin``; a second Ctrl-C aborts.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any, TextIO

from medseg_gui.core.config import choices_of
from medseg_gui.core.words import format_duration, plural
from medseg_gui.cli.common import fail


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a SegFormer model (progress bar, or JSON-lines events)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="run configuration TOML (see `medseg config default`)")
    src.add_argument("--demo", action="store_true",
                     help="train on the built-in synthetic demo dataset with the configuration recommended "
                          "for this machine (override any setting below)")
    src.add_argument("--resume", metavar="RUN_DIR", help="continue a previous run from its last checkpoint")
    o = p.add_argument_group("overrides")
    o.add_argument("--dataset", metavar="PATH", help="dataset folder (or 'demo')")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", type=int)
    o.add_argument("--accumulate", type=int, dest="accumulate_grad_batches", metavar="N",
                   help="gradient accumulation steps")
    o.add_argument("--lr", type=float)
    o.add_argument("--variant", choices=choices_of("training.variant"))
    o.add_argument("--pretrained", metavar="SOURCE", help="auto | hub | scratch | model folder | .safetensors")
    o.add_argument("--image-size", type=int)
    o.add_argument("--precision", choices=choices_of("training.precision"))
    o.add_argument("--accelerator", choices=choices_of("training.accelerator"))
    o.add_argument("--devices", type=int, help="number of GPUs (or CPU processes); more than 1 runs DDP. A count "
                   "other than the GPUs named in training.gpus trains on the cards with the most free memory")
    o.add_argument("--gpus", metavar="LIST",
                   help="train on exactly these GPUs: CUDA indices or UUIDs as `medseg hardware` lists them, "
                        "e.g. 0,1 (training.gpus; sets the number of devices)")
    o.add_argument("--strategy", default="auto", help="Lightning strategy (default: ddp for several devices)")
    o.add_argument("--num-nodes", type=int, default=1)
    o.add_argument("--workers", type=int, dest="num_workers", metavar="N", help="data-loading processes")
    o.add_argument("--max-steps-per-epoch", type=int, metavar="N", help="cap training batches per epoch")
    o.add_argument("--seed", type=int)
    o.add_argument("--output", metavar="DIR", help="folder receiving the run folder (training.output_dir)")
    p.add_argument("--run-dir", metavar="DIR",
                   help="use exactly this run folder (created if missing; a folder that already holds a run "
                        "is refused: continue it with --resume)")
    p.add_argument("--events-json", action="store_true", help="print events as JSON lines on stdout")
    p.add_argument("--stop-on-stdin", action="store_true", help="stop cooperatively when stdin reads 'stop'")
    p.set_defaults(handler=run_train)


OVERRIDES = {"epochs": "training.epochs", "batch_size": "training.batch_size",
             "accumulate_grad_batches": "training.accumulate_grad_batches", "lr": "training.lr",
             "variant": "training.variant", "pretrained": "training.pretrained",
             "image_size": "dataset.image_size", "precision": "training.precision",
             "accelerator": "training.accelerator", "devices": "training.devices",
             "num_workers": "training.num_workers", "max_steps_per_epoch": "training.max_steps_per_epoch",
             "seed": "training.seed", "output": "training.output_dir", "dataset": "dataset.path"}


def build_config(args: argparse.Namespace) -> Any:
    """The run's config: a file, a resumed run's, or the recommendation for --demo; then overrides."""
    from medseg_gui.core import config as cfg
    if args.config:
        config = cfg.load(args.config)
    elif args.resume:
        from medseg_gui.core.runs import CONFIG_FILE

        config = cfg.load(os.path.join(args.resume, CONFIG_FILE))
    else:
        config = demo_config()
    for attr, dotted in OVERRIDES.items():
        value = getattr(args, attr, None)
        if value is not None:
            cfg.set_value(config, dotted, value)
    if getattr(args, "gpus", None) is not None:
        from medseg_gui.core.gpu_identity import parse_gpu_list

        gpus = parse_gpu_list(args.gpus)
        if not gpus or (args.devices is not None and args.devices != len(gpus)):
            raise cfg.ConfigError([cfg.ConfigProblem("training.gpus", f"--gpus {args.gpus!r} names {len(gpus)} "
                                                     f"GPU(s); give CUDA indices or UUIDs, e.g. --gpus 0,1"
                                                     + (f" (and drop --devices {args.devices})" if gpus else ""))],
                                  "the command line")
        config.training.gpus, config.training.devices = gpus, len(gpus)
    elif getattr(args, "devices", None) is not None and config.training.gpus and len(config.training.gpus) != args.devices:
        config.training.gpus = []  # the command line's count wins (e.g. --demo's one recommended card, --devices 2)
    return config


def demo_config() -> Any:
    """What the app would recommend for this machine, on the demo dataset."""
    from medseg_gui.core.config import RunConfig

    try:
        from medseg_gui.core.data.validate import summary_for_recommendation
        from medseg_gui.core.hardware import probe
        from medseg_gui.core.planning.recommend import recommend

        # the demo's size keeps the batch to ~8 steps an epoch (a 140 GB card planned batch 190 for its 192
        # training slices: one step an epoch, so the CUDA graph, captured after 3 warm-up steps, never ran)
        summary, _ = summary_for_recommendation("demo")
        config = recommend(probe(), dataset=summary).config
    except Exception:  # noqa: BLE001 — a recommendation problem must not block the demo
        config = RunConfig()
        config.training.variant, config.dataset.image_size, config.training.epochs = "b0", 224, 5
    config.dataset.path = "demo"
    return config


def run_train(args: argparse.Namespace) -> int:
    import logging

    from medseg_gui.core.config import ConfigError, validate
    from medseg_gui.core.engine.quiet import lightning_logs_at
    from medseg_gui.core.engine.session import TrainingSession, process_rank

    events_out = _claim_stdout() if args.events_json else None
    lightning_logs_at(logging.WARNING)  # Lightning's info banners would interleave with the progress bar
    try:
        config = build_config(args)
    except ConfigError as exc:
        return fail(str(exc), "fix the named settings")
    problems = validate(config)
    if problems:
        return fail("the configuration has problems:\n" + "\n".join(f"  - {p}" for p in problems),
                    "fix the named settings")
    from medseg_gui.core.planning.precision import DeviceError, resolve_accelerator

    try:
        resolve_accelerator(config.training.accelerator)
    except DeviceError as exc:
        return fail(str(exc))
    rank = process_rank(args.num_nodes, config.training.devices)
    if events_out is not None:
        sink = _json_sink(events_out)
    else:
        sink = ProgressPrinter(sys.stderr) if rank == 0 else (lambda event: None)
    session = TrainingSession(config, sink, run_dir=args.run_dir, resume_from=args.resume,
                              strategy=args.strategy, num_nodes=args.num_nodes)
    restore = _install_stop_signals(session, quiet=events_out is not None)
    if args.stop_on_stdin and rank == 0:
        _watch_stdin(session)
    try:
        result = session.run()
    finally:
        restore()
    from medseg_gui.core.events import RUN_FOLDER_KINDS, RunFinished

    if isinstance(result, RunFinished):
        return 0
    return 2 if result.kind in RUN_FOLDER_KINDS else 1  # 2: the command asked for a folder it may not use


def _claim_stdout() -> TextIO:
    """Keep the real stdout for events; point fd 1 and sys.stdout at stderr for everything else."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def _json_sink(stream: TextIO):
    from medseg_gui.core.events import JsonlWriter

    writer = JsonlWriter(stream)
    lock = threading.Lock()

    def emit(event: Any) -> None:
        with lock:
            writer(event)

    return emit


def _install_stop_signals(session: Any, quiet: bool) -> Any:
    """First Ctrl-C (or SIGBREAK) stops after the current batch; the second aborts."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    names = ["SIGINT"] + (["SIGBREAK"] if hasattr(signal, "SIGBREAK") else [])
    previous = {name: signal.getsignal(getattr(signal, name)) for name in names}

    def handler(signum: int, frame: Any) -> None:
        if session.stop_requested:
            signal.signal(signum, signal.default_int_handler)
            raise KeyboardInterrupt
        session.stop()
        if not quiet:
            print("\nstopping after this batch (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    for name in names:
        signal.signal(getattr(signal, name), handler)

    def restore() -> None:
        for name, old in previous.items():
            signal.signal(getattr(signal, name), old)

    return restore


def _watch_stdin(session: Any) -> None:
    def watch() -> None:
        for line in sys.stdin:
            if line.strip().lower() == "stop":
                session.stop()
                return

    threading.Thread(target=watch, daemon=True, name="stdin-stop").start()


class ProgressPrinter:
    """A one-line progress bar on a terminal; plain lines (at most every 10 s) when piped to a file."""

    WIDTH = 24

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self.epochs = 0
        self._last_plain = 0.0
        self._open_line = False
        from medseg_gui.core.live_metrics import LiveMetrics

        self.live = LiveMetrics()  # the same ETA as the GUI's (validation and checkpoints included)

    def __call__(self, event: Any) -> None:
        from medseg_gui.core import events as ev
        from medseg_gui.core.headline import HEADLINE_METRIC, HEADLINE_SHORT

        self.live.apply(event)

        if isinstance(event, ev.RunStarted):
            self.epochs = event.epochs
            self._line(f"run folder {event.run_dir}\ndevice {event.device}: {plural(event.epochs, 'epoch')} x "
                       f"{event.steps_per_epoch} steps, {event.train_images} training / {event.val_images} "
                       f"validation images" + (f", resuming at step {event.resumed_from_step}"
                                               if event.resumed_from_step else ""))
        elif isinstance(event, ev.StepMetrics):
            self._step(event)
        elif isinstance(event, ev.EpochMetrics):
            dice = " ".join(f"{d:.3f}" for d in event.per_class_dice)
            self._line(f"epoch {event.epoch}/{self.epochs}: train loss {_f(event.train_loss)}, val loss "
                       f"{_f(event.val_loss)}, {HEADLINE_METRIC} {_f(event.val_f1)} (Dice per class {dice}), "
                       f"{_f(event.epoch_time_s, '.1f')} s")
        elif isinstance(event, ev.LogMessage):
            self._line(f"{event.level}: {event.message}" if event.level != "info" else event.message)
        elif isinstance(event, ev.OomRecovered):
            self._line(f"warning: {event.message}")
        elif isinstance(event, ev.Checkpointed) and event.is_best:
            self._line(f"best checkpoint ({HEADLINE_SHORT} {_f(event.metric)}) -> {event.path}")
        elif isinstance(event, ev.RunFinished):
            state = "stopped" if event.stopped_early else "finished"
            self._line(f"{state}: {plural(event.epochs_done, 'epoch')}, {plural(event.steps_done, 'step')} in {event.duration_s:.0f} s; "
                       f"best {HEADLINE_METRIC} {_f(event.best_f1)}; bundle {event.bundle_dir}")
        elif isinstance(event, ev.RunFailed):
            self._line(f"error: {ev.failure_line(event)}" + (f"\nhint: {event.hint}" if event.hint else ""))

    def _step(self, e: Any) -> None:
        filled = int(self.WIDTH * e.epoch_progress)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        text = (f"epoch {e.epoch}/{self.epochs} [{bar}] {e.epoch_progress * 100:3.0f}% step {e.step} "
                f"loss {_f(e.loss)} {_f(e.images_per_s, '.1f')} img/s ETA {format_duration(self.live.eta_s)}")
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
            self.stream.flush()
            self._open_line = True
        elif time.monotonic() - self._last_plain >= 10:
            self._last_plain = time.monotonic()
            self._line(text)

    def _line(self, text: str) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()


def _f(value: float | None, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)
