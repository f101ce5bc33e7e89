"""Run folders: layout, checkpoints, metrics.csv, environment.json, listing and re-opening runs.

Layout: ``<output>/<YYYYmmdd-HHMMSS>_<variant>_<name>/`` with ``config.toml``,
``events.jsonl``, ``metrics.csv``, ``environment.json``, ``checkpoints/{best,last}.ckpt``, ``bundle/``, and
``run.lock`` while a training writes it (core/run_lock.py). A new run never reuses a folder that holds
anything (``new_run_dir_problem``); only a resume continues one.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)``
reads them; a file that needs anything else (a pickled object, which could run code) is refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg_gui.core import config as cfg
from medseg_gui.core.atomic import atomic_write, atomic_write_text, name_write_error
from medseg_gui.core.events import Event, RunFailed, RunFinished, RunStarted, StepMetrics, read_jsonl
from medseg_gui.core.run_lock import lock_holder

CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.csv"
ENV_FILE = "environment.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.ckpt"  # the best validation score so far: what the bundle is made from
LAST_CHECKPOINT = "last.ckpt"  # the end of the last finished epoch: what a resume continues
BUNDLE_DIR = "bundle"
BUNDLE_META_FILE = "medseg.json"  # a bundle's description (core.engine.bundle writes it): its sign


class CheckpointError(ValueError):
    """A checkpoint that cannot or must not be loaded; the message names the file and what to do."""


# ---- run folder ------------------------------------------------------------------------------------
def run_name(config: cfg.RunConfig) -> str:
    path = config.dataset.path.strip()
    base = "demo" if path == "demo" else (Path(path).name or "data")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "data"


def create_run_dir(config: cfg.RunConfig, output_dir: str | Path | None = None,
                   now: float | None = None) -> Path:
    """A fresh, uniquely named run folder with its config.toml and checkpoints/ (never reuses one)."""
    root = Path(output_dir or config.training.output_dir).expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    base = f"{stamp}_{config.training.variant}_{run_name(config)}"
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        (candidate / CHECKPOINT_DIR).mkdir()
        cfg.save(config, candidate / CONFIG_FILE)
        return candidate
    raise OSError(f"cannot create a run folder under {root}: too many runs named {base}")


def environment_info() -> dict[str, Any]:
    """Versions and device, so a result can be traced back to what produced it."""
    import lightning
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__, "lightning": lightning.__version__,
        "transformers": transformers.__version__, "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(), "gpus": [],
    }
    try:
        import albumentations
        info["albumentations"] = albumentations.__version__
    except Exception:  # noqa: BLE001 — optional for this record
        pass
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": props.name, "total_gb": props.total_memory / 1024**3,
                                 "capability": f"{props.major}.{props.minor}"})
    return info


def write_environment(run_dir: Path, extra: dict[str, Any] | None = None) -> None:
    data = environment_info()
    data.update(extra or {})
    atomic_write_text(run_dir / ENV_FILE, json.dumps(data, indent=2, default=str))


# ---- metrics.csv -----------------------------------------------------------------------------------
def metrics_columns(class_names: list[str]) -> list[str]:
    base = ["epoch", "step", "train_loss", "val_loss", "val_f1", "lr", "epoch_time_s", "batch_size",
            "accumulate_grad_batches"]
    return base + [f"dice_{n}" for n in class_names] + [f"iou_{n}" for n in class_names]


class MetricsCsv:
    """One row per epoch, appended and flushed at once (a crash loses at most the current row)."""

    def __init__(self, path: Path, class_names: list[str]):
        self.path = path
        self.columns = metrics_columns(class_names)
        if not path.exists() or path.stat().st_size == 0:
            atomic_write_text(path, ",".join(self.columns) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(c)) for c in self.columns])
        try:
            with open(self.path, "a", encoding="utf-8", newline="") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise name_write_error(exc, self.path)

    def truncate_after(self, epochs_completed: int) -> None:
        """Keep one row per epoch the resumed checkpoint has done (epoch numbers are 1-based in the
        file): rows of epochs a resume will redo go, a partial last row (a crash mid-write) goes, and
        an epoch written twice keeps its latest row, so resuming never duplicates rows."""
        latest: dict[int, dict[str, Any]] = {}
        for r in read_metrics(self.path):
            epoch = r.get("epoch")
            if isinstance(epoch, int) and 1 <= epoch <= epochs_completed:
                latest.pop(epoch, None)
                latest[epoch] = r
        keep = [latest[e] for e in sorted(latest)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        for r in keep:
            writer.writerow([_cell(r.get(c)) for c in self.columns])
        atomic_write_text(self.path, buf.getvalue())


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.csv; a last line without its newline (a crash mid-write) is not a row."""
    if not Path(path).exists():
        return []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    out = []
    for r in csv.DictReader(io.StringIO(text, newline="")):
        if None in r:  # more cells than columns: not a row this file's header describes
            continue
        parsed: dict[str, Any] = {}
        for k, v in r.items():
            if v in ("", None):
                parsed[k] = None
            elif k in ("epoch", "step", "batch_size", "accumulate_grad_batches"):
                try:
                    parsed[k] = int(float(v))
                except (ValueError, OverflowError):
                    parsed[k] = None
            else:
                try:
                    parsed[k] = float(v)
                except ValueError:
                    parsed[k] = v
        out.append(parsed)
    return out


# ---- checkpoints -----------------------------------------------------------------------------------
def save_checkpoint(path: Path, *, model_state: dict[str, Any], optimizer_state: dict[str, Any] | None,
                    epochs_completed: int, step: int, best_f1: float | None, batch_size: int,
                    accumulate_grad_batches: int, config: cfg.RunConfig, val_f1: float | None = None) -> Path:
    """Atomic ``torch.save`` of plain data only (tensors moved to the CPU)."""
    import torch

    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().to("cpu", copy=True) for k, v in model_state.items()},
        "optimizer": _to_cpu(optimizer_state) if optimizer_state is not None else None,
        "epochs_completed": int(epochs_completed),
        "step": int(step),
        "best_f1": None if best_f1 is None else float(best_f1),
        "val_f1": None if val_f1 is None else float(val_f1),
        "batch_size": int(batch_size),
        "accumulate_grad_batches": int(accumulate_grad_batches),
        "config": config.to_dict(),
        "saved": time.time(),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: a full disk surfaces as OSError(ENOSPC), not torch's text
            torch.save(payload, fh)

    return atomic_write(Path(path), write)


def _to_cpu(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_cpu(v) for v in value]
    return value


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a medseg checkpoint with ``weights_only=True``; refuse anything else with a clear reason.

    ``mmap=True`` maps the tensors instead of reading them: cheap when only the numbers are needed
    (``checkpoint_score``). The refusal is our own sentence: torch's names an unsafe way round it.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} contains pickled Python objects that a safe load refuses (loading them could run code); "
            f"medseg only loads checkpoints it wrote (tensors and numbers): start a new run or choose a "
            f"checkpoint medseg saved") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = _plain(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or not a PyTorch file): {reason}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise CheckpointError(f"checkpoint {path} is not a medseg checkpoint (format {CHECKPOINT_FORMAT}); "
                              f"to start from other weights set training.pretrained to a .safetensors file")
    return data


def _plain(text: str) -> str:
    """Terminal colour codes out of library text we quote."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).strip()


def checkpoint_paths(run_dir: Path) -> tuple[Path, Path]:
    """(best, last) checkpoint of a run folder."""
    return run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT, run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def checkpoint_score(path: Path) -> tuple[int, float | None]:
    """(epochs completed, validation F1) a checkpoint was saved with, without reading its tensors."""
    try:
        data = load_checkpoint(path, mmap=True)
    except CheckpointError:  # mmap needs the zip format; an older file may still read whole
        data = load_checkpoint(path)
    score = data.get("val_f1")
    return int(data.get("epochs_completed") or 0), None if score is None else float(score)


def new_run_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot take a NEW run (None: it can). An existing run is only ever resumed, and a
    folder holding anything else is not ours to fill (a config.toml or checkpoints/ there would be
    replaced)."""
    path = Path(path).expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        return f"the run folder {path} exists and is not a folder; choose a new folder"
    if is_run_dir(path):
        return (f"{path} already holds a training run; resume it with 'medseg train --resume {path}' "
                f"or choose a new run folder (nothing was changed)")
    try:
        if any(path.iterdir()):
            return f"the run folder {path} exists and is not empty; choose a new or empty folder"
    except OSError as exc:
        return f"the run folder {path} cannot be read ({exc.strerror or exc}); choose another folder"
    return None


# ---- listing and re-opening ------------------------------------------------------------------------
@dataclass
class RunSummary:
    run_dir: Path
    name: str
    variant: str | None
    dataset: str | None
    created: float
    status: str  # "finished" | "stopped" | "failed" | "training" (its lock is held now) | "incomplete" (crashed)
    best_f1: float | None = None
    epochs_done: int = 0
    has_bundle: bool = False
    steps_done: int = 0  # optimiser steps reached (a run stopped mid-epoch has steps but 0 epochs)
    last_epoch: int = 0  # the epoch the last step belonged to (1-based): where a stop happened
    can_resume: bool = False  # checkpoints/last.ckpt exists
    trainer: str = ""  # who trains it now (status "training"), in words: "process 123 on host (since …)"


@dataclass
class RunRecord:
    run_dir: Path
    config: cfg.RunConfig
    events: list[Event]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / CHECKPOINT_DIR).is_dir()


def list_runs(output_dir: str | Path) -> list[RunSummary]:
    """Runs under ``output_dir``, newest first; unreadable folders are skipped, never fatal."""
    root = Path(output_dir).expanduser()
    if not root.is_dir():
        return []
    out = []
    for child in root.iterdir():
        if not child.is_dir() or not is_run_dir(child):
            continue
        try:
            out.append(_summarise(child))
        except (OSError, cfg.ConfigError, ValueError):
            continue
    return sorted(out, key=lambda s: s.created, reverse=True)


def _summarise(run_dir: Path) -> RunSummary:
    config = cfg.load(run_dir / CONFIG_FILE)
    events = read_jsonl(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).exists() else []
    status, best, epochs, steps, last_epoch = "incomplete", None, 0, 0, 0
    for ev in events:
        if isinstance(ev, StepMetrics):
            steps, last_epoch = ev.step, ev.epoch
        elif isinstance(ev, RunFinished):
            status = "stopped" if ev.stopped_early else "finished"
            best, epochs = ev.best_f1, ev.epochs_done
            steps = max(steps, ev.steps_done)
        elif isinstance(ev, RunFailed):
            status = "failed"
        elif isinstance(ev, RunStarted):
            status = "incomplete"
    if best is None:
        rows = read_metrics(run_dir / METRICS_FILE)
        f1s = [r["val_f1"] for r in rows if r.get("val_f1") is not None]
        best = max(f1s) if f1s else None
        epochs = max([r["epoch"] for r in rows if r.get("epoch")] or [0])
    holder = lock_holder(run_dir)  # a run being trained reads like a crashed one from its files alone
    if holder is not None:
        status = "training"
    return RunSummary(run_dir=run_dir, name=run_dir.name, variant=config.training.variant,
                      dataset=config.dataset.path, created=(run_dir / CONFIG_FILE).stat().st_mtime,
                      status=status, best_f1=best, epochs_done=epochs,
                      has_bundle=(run_dir / BUNDLE_DIR / BUNDLE_META_FILE).is_file(), steps_done=steps,
                      last_epoch=last_epoch, can_resume=checkpoint_paths(run_dir)[1].is_file(),
                      trainer=holder.describe() if holder is not None else "")


def load_run(run_dir: str | Path) -> RunRecord:
    """Config, events and metrics of a past run, for re-plotting and resuming."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
    env = {}
    if (run_dir / ENV_FILE).is_file():
        try:
            env = json.loads((run_dir / ENV_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            env = {}
    events = read_jsonl(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).exists() else []
    return RunRecord(run_dir=run_dir, config=cfg.load(run_dir / CONFIG_FILE), events=events,
                     metrics=read_metrics(run_dir / METRICS_FILE), environment=env)
