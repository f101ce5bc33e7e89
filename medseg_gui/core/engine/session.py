"""A training run from start to finish: ``TrainingSession(config, sink).run()``.

The session owns everything around Lightning's ``fit``: the run folder, the event stream, resume,
checkpoints, the cooperative stop, out-of-memory recovery and the final bundle. ``run()`` returns
the terminal event (RunFinished or RunFailed) and does not raise for expected failures, so the GUI
worker and the CLI handle one value. ``stop()`` may be called from any thread.

Out-of-memory recovery: a CUDA OOM inside ``fit`` unwinds to here; we free the trainer, restore the
last good state (last.ckpt, or the initial weights before the first epoch ended), halve the batch,
double gradient accumulation (same effective batch) and start ``fit`` again. Restarting ``fit`` is
simpler and more robust than patching Lightning's loops mid-flight.

The run folder is never trained into twice at once or by accident: a new run refuses a folder that
already holds one (only a resume continues it), and rank 0 holds ``run.lock`` (core/run_lock.py)
from before the first write to the end. Checkpoints are written so that a crash between any two
writes resumes consistently: an improved epoch writes best.ckpt first, then last.ckpt; on resume the
best score is read back from best.ckpt itself, so best score = best file = bundle.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg_gui.core import atomic
from medseg_gui.core import config as cfg
from medseg_gui.core import gpu_identity as gi
from medseg_gui.core import hardware
from medseg_gui.core import runs
from medseg_gui.core.atomic import is_disk_full, remove_stale_temps
from medseg_gui.core.cpu_threads import configure_cpu_training
from medseg_gui.core.data.datamodule import build_datamodule
from medseg_gui.core.engine.bundle import save_bundle
from medseg_gui.core.engine.diagnosis import diagnosis_callback
from medseg_gui.core.engine.failures import classify_failure, is_oom
from medseg_gui.core.engine.model import ModelSourceError, build_model
from medseg_gui.core.engine.parts import build_module, free_cuda, trainer_settings
from medseg_gui.core.engine.quiet import quiet_lightning
from medseg_gui.core.events import (Checkpointed, Event, JsonlWriter, LogMessage, OomRecovered, PhaseChanged,
                                    RunFailed, RunFinished, RunStarted, Sink, open_jsonl_append)
from medseg_gui.core.gpu_identity import TRAIN_DEVICES_ENV
from medseg_gui.core.headline import HEADLINE_SHORT
from medseg_gui.core.planning import precision as precision_rules
from medseg_gui.core.planning import speed
from medseg_gui.core.planning.memory import default_memory_model, safety_margin
from medseg_gui.core.planning.recommend import predicted_peak
from medseg_gui.core.run_lock import LOCK_FILE, RunLock, RunLocked
from medseg_gui.core.words import plural

RUN_DIR_ENV = "MEDSEG_RUN_DIR"  # passes rank 0's run folder to the DDP processes Lightning starts


class _Failure(Exception):
    """An expected failure, carried to ``run()`` which turns it into a RunFailed event."""

    def __init__(self, reason: str, hint: str = "", kind: str = "error", detail: str = ""):
        super().__init__(reason)
        self.reason, self.hint, self.kind, self.detail = reason, hint, kind, detail


@dataclass
class _State:
    """The last good state to restart from after an OOM (and what a resume loads)."""
    model: dict[str, Any] | None
    optimizer: dict[str, Any] | None
    epochs_completed: int
    step: int
    best_f1: float | None


def process_rank(num_nodes: int = 1, devices: int = 1) -> int:
    """This process's global rank before Lightning sets up (env vars of torchrun/SLURM/Lightning)."""
    for key in ("RANK", "SLURM_PROCID", "PMI_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    return node * devices + local


class _DefaultDataModules:
    """The data layer's DataModule; the dataset's validation report is reused when the OOM recovery
    rebuilds it with a smaller batch (checking a dataset can take seconds)."""

    def __init__(self) -> None:
        self.report = None

    def __call__(self, config: cfg.RunConfig) -> Any:
        dm = build_datamodule(config, self.report)
        dm.prepare()
        self.report = dm.report
        return dm


class TrainingSession:
    """One training run. Construct, call ``run()`` (blocking), ``stop()`` from elsewhere to end early.

    ``datamodule_factory(config)`` builds the LightningDataModule for a config (whose batch size the
    OOM recovery changes); the default is the data layer's ``build_datamodule``.
    ``fault_hook(module, batch_size)`` is called at each training step (fault injection in tests).
    """

    def __init__(self, config: cfg.RunConfig, sink: Sink | None = None, run_dir: str | Path | None = None,
                 resume_from: str | Path | None = None, *, strategy: str = "auto", num_nodes: int = 1,
                 datamodule_factory: Callable[[cfg.RunConfig], Any] | None = None,
                 step_event_interval_s: float = 0.5,
                 fault_hook: Callable[[Any, int], None] | None = None,
                 callbacks: list[Any] | None = None):
        self.config = config.copy()
        self.user_sink = sink or (lambda event: None)
        self.requested_run_dir = Path(run_dir) if run_dir is not None else None
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.strategy = strategy
        self.num_nodes = num_nodes
        self.datamodule_factory = datamodule_factory or _DefaultDataModules()
        self.step_event_interval_s = step_event_interval_s
        self.fault_hook = fault_hook
        self.extra_callbacks = list(callbacks or [])  # e.g. the speed benchmark's step timer
        self._stop = threading.Event()
        self.run_dir: Path | None = None
        self.rank = process_rank(num_nodes, config.training.devices)
        self._emit: Sink = self.user_sink
        self._events_file = None
        self._file_sink: JsonlWriter | None = None
        self._lock: RunLock | None = None
        self._created_run_dir = False  # only a folder this session made may be removed again
        self._fresh_run_dir = False  # a new run's folder: everything in it is this session's
        self._notes: list[str] = []  # said once the events file is open (stale lock, stale temp files)
        self._started_emitted = False
        self._csv: runs.MetricsCsv | None = None
        self._model: Any = None
        self._module: Any = None
        self._trainer: Any = None
        self._initial_state: _State | None = None
        self._previous_run_dir_env: str | None = None
        self._device_plan: Any = None  # gpu_identity.DevicePlan, resolved at the first fit
        self._set_devices_env = False
        self.best_f1: float | None = None
        self.epochs_completed = 0
        self.step = 0
        self.batch_size = config.training.batch_size
        self.accumulate = config.training.accumulate_grad_batches

    # ---- public --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end after the current batch (thread-safe, returns at once)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def run(self) -> RunFinished | RunFailed:
        start = time.time()
        discard = False
        try:
            try:
                with quiet_lightning():
                    result: RunFinished | RunFailed = self._run(start)
            except _Failure as failure:
                result = RunFailed(run_dir=str(self.run_dir or ""), reason=failure.reason, hint=failure.hint,
                                   kind=failure.kind, detail=failure.detail)
            except Exception as exc:  # noqa: BLE001 — the contract: a terminal event, never a raise
                result = classify_failure(exc, str(self.run_dir or ""))
            discard = self._is_failed_start(result)
            if discard:
                if isinstance(result, RunFinished):  # a Stop before the first step
                    self._safe_emit(LogMessage(level="info", message=(
                        f"stopped before training began: removed the run folder {self.run_dir}, which held "
                        f"nothing worth keeping")))
                result.run_dir = ""  # the folder goes: nothing in it was worth keeping
            self._safe_emit(result)
        finally:  # every way out, Ctrl-C included, closes the files and releases the lock
            self._close(discard=discard)
        return result

    # ---- the run -------------------------------------------------------------------------------
    def _run(self, start: float) -> RunFinished | RunFailed:
        problems = cfg.validate(self.config)
        if problems:
            raise _Failure("the configuration has problems: " + "; ".join(str(p) for p in problems),
                           hint="fix the listed settings and start again", kind="config")
        try:  # before any folder is made: a GPU request on a machine without one fails here
            precision_rules.resolve_accelerator(self.config.training.accelerator)
        except precision_rules.DeviceError as exc:
            raise _Failure(str(exc), hint="set training.accelerator to cpu or auto", kind="config") from None
        checkpoint = self._resume_checkpoint()
        self._claim_run_dir(checkpoint)
        resume = self._load_resume(checkpoint)
        self._open_run_dir(resume)
        tr = self.config.training
        if self._stop.is_set():
            return self._finished(start, stopped=True)

        self._emit(PhaseChanged(phase="loading_model", message=f"SegFormer-{tr.variant}"))
        import lightning as L

        L.seed_everything(tr.seed, verbose=False)
        model, state = self._initial_model(resume)
        self._model = model
        self._initial_state = state
        while True:
            if self._stop.is_set():
                break
            try:
                self._fit_once(model, state)
                break
            except Exception as exc:  # noqa: BLE001 — OOM is recovered, the rest re-raised
                if not is_oom(exc):
                    raise
                detail = str(exc)
            # outside the except block: the traceback (and the tensors its frames hold) is gone
            state = self._recover_from_oom(model, detail)
        return self._finished(start, stopped=self._stop.is_set())

    def _resume_checkpoint(self) -> Path | None:
        """The checkpoint a resume starts from (path checks only: it is read once the folder is locked)."""
        if self.resume_from is None:
            return None
        path = self.resume_from
        ckpt = runs.checkpoint_paths(path)[1] if path.is_dir() else path
        if path.is_dir() and not runs.is_run_dir(path):
            raise _Failure(f"cannot resume: {path} is not a run folder (no {runs.CONFIG_FILE} and checkpoints/)",
                           hint="choose a folder created by a previous run", kind="config")
        if self.requested_run_dir is None:
            self.requested_run_dir = _owning_run(ckpt)
        return ckpt

    def _load_resume(self, ckpt: Path | None) -> dict[str, Any] | None:
        if ckpt is None:
            return None
        try:
            data = runs.load_checkpoint(ckpt)
        except runs.CheckpointError as exc:
            raise _Failure(f"cannot resume: {exc}", hint="start a new run or pick another run folder",
                           kind="config") from None
        saved = data.get("config", {}).get("training", {}), data.get("config", {}).get("dataset", {})
        tr, ds = self.config.training, self.config.dataset
        for where, mine, theirs in (("training.variant", tr.variant, saved[0].get("variant")),
                                    ("dataset.num_classes", ds.num_classes, saved[1].get("num_classes"))):
            if theirs is not None and mine != theirs:
                raise _Failure(f"cannot resume from {ckpt}: {where} is {theirs!r} there but {mine!r} now",
                               hint=f"set {where} back to {theirs!r} or start a new run", kind="config")
        data["_path"] = str(ckpt)
        self._reconcile_best(data)
        return data

    def _reconcile_best(self, resume: dict[str, Any]) -> None:
        """The best score a resume continues with is the one best.ckpt was saved with: a crash after
        best.ckpt and before last.ckpt leaves last.ckpt one improvement behind, and a best.ckpt that
        is gone must not be reported."""
        if self.run_dir is None:
            return
        best_path, _ = runs.checkpoint_paths(self.run_dir)
        recorded = resume.get("best_f1")
        score = None
        if best_path.is_file():
            try:
                score = runs.checkpoint_score(best_path)[1]
            except runs.CheckpointError as exc:
                raise _Failure(f"cannot resume: {exc}", kind="config",
                               hint=f"move {best_path} out of the run folder to resume without it") from None
        if score != recorded:
            before = "no score" if recorded is None else f"{HEADLINE_SHORT} {recorded:.4f}"
            if score is None:
                self._notes.append(f"there is no best checkpoint in {best_path.parent} (the checkpoint resumed "
                                   f"recorded {before}): the next validated epoch becomes the best")
            else:
                self._notes.append(f"{best_path} holds {HEADLINE_SHORT} {score:.4f} while the checkpoint resumed recorded "
                                   f"{before} (the run ended between two saves): continuing with {score:.4f}")
        resume["best_f1"] = score

    def _claim_run_dir(self, checkpoint: Path | None) -> None:
        """Rank 0 creates the folder (or checks the one it resumes) and locks it before writing
        anything; other ranks only learn its path (rank 0 holds the lock for them)."""
        inherited = os.environ.get(RUN_DIR_ENV)
        if self.rank != 0:
            self.run_dir = Path(inherited) if inherited else self.requested_run_dir
            self._emit = lambda event: None
            if self.run_dir is not None and (self.run_dir / runs.CONFIG_FILE).is_file():
                # rank 0 may have resolved 'auto' settings from the hardware it saw: train the same run
                self.config = cfg.load(self.run_dir / runs.CONFIG_FILE)
            return
        requested = self.requested_run_dir
        where = requested if requested is not None else Path(self.config.training.output_dir).expanduser()
        hint = "each training run needs a folder of its own; a run is continued only by resuming it"
        try:
            if requested is None:
                self.run_dir = runs.create_run_dir(self.config)
                self._created_run_dir = True
                self._lock = RunLock(self.run_dir).acquire()
            else:
                continuing = (checkpoint is not None and runs.is_run_dir(requested)
                              and _same_path(_owning_run(checkpoint), requested))
                problem = None if continuing else runs.new_run_dir_problem(requested)
                if problem:
                    raise _Failure(problem, kind="run_dir", hint=hint)
                existed = requested.exists()
                requested.mkdir(parents=True, exist_ok=True)
                self.run_dir, self._created_run_dir = requested, not existed
                self._lock = RunLock(self.run_dir).acquire()
                if not continuing and any(p.name != LOCK_FILE for p in requested.iterdir()):
                    # another process filled it between our check and our lock
                    self._lock.release()
                    self._lock = None
                    raise _Failure(runs.new_run_dir_problem(requested) or f"{requested} is in use", kind="run_dir",
                                   hint=hint)
        except RunLocked as exc:
            raise _Failure(str(exc), kind="run_busy", hint="two trainings must not write one run folder") from None
        except OSError as exc:
            raise _write_failure(exc, self.run_dir or where) from None
        self._fresh_run_dir = checkpoint is None or self._created_run_dir  # only now: the folder is ours
        if self._lock.taken_over is not None:
            self._notes.append(f"took over the lock of {self._lock.taken_over.describe()}, which is no longer "
                               f"running")
        for folder in (self.run_dir, self.run_dir / runs.CHECKPOINT_DIR):
            for gone in remove_stale_temps(folder):
                self._notes.append(f"removed {gone.name}, a temporary file an interrupted run left")

    def _open_run_dir(self, resume: dict[str, Any] | None) -> None:
        """Rank 0 writes the config and opens events.jsonl and metrics.csv in the locked folder."""
        if self.rank != 0:
            return
        assert self.run_dir is not None
        try:
            (self.run_dir / runs.CHECKPOINT_DIR).mkdir(exist_ok=True)
            if self.requested_run_dir is not None:
                cfg.save(self.config, self.run_dir / runs.CONFIG_FILE)
            self._previous_run_dir_env = os.environ.get(RUN_DIR_ENV)
            os.environ[RUN_DIR_ENV] = str(self.run_dir)
            self._events_file = open_jsonl_append(self.run_dir / runs.EVENTS_FILE)
            self._file_sink = JsonlWriter(self._events_file)
            self._emit = self._emit_everywhere
            for note in self._notes:
                self._log("info", note)
            self._csv = runs.MetricsCsv(self.run_dir / runs.METRICS_FILE, self.config.dataset.class_names)
            if resume is not None:
                self._csv.truncate_after(int(resume["epochs_completed"]))
            runs.write_environment(self.run_dir, {"strategy": self.strategy, "num_nodes": self.num_nodes,
                                                  "devices": self.config.training.devices})
        except OSError as exc:
            if is_disk_full(exc):
                raise
            raise _write_failure(exc, self.run_dir) from None

    def _initial_model(self, resume: dict[str, Any] | None) -> tuple[Any, _State]:
        build_config = self.config
        if resume is not None and self.config.training.pretrained in ("auto", "hub"):
            build_config = self.config.copy()  # the checkpoint has the weights: no download
            build_config.training.pretrained = "scratch"
        try:
            model = build_model(build_config, log=self._log)
        except ModelSourceError as exc:
            raise _Failure(str(exc), hint="check training.pretrained", kind="config") from None
        if resume is None:
            initial = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return model, _State(initial, None, 0, 0, None)
        try:
            model.load_state_dict(resume["model"], strict=True)
        except RuntimeError as exc:
            raise _Failure(f"cannot resume from {resume['_path']}: its weights do not fit this model "
                           f"({str(exc).splitlines()[0]})", kind="config") from None
        self.best_f1 = resume.get("best_f1")
        self.epochs_completed, self.step = int(resume["epochs_completed"]), int(resume["step"])
        saved_batch, saved_acc = int(resume["batch_size"]), int(resume["accumulate_grad_batches"])
        tr = self.config.training
        if saved_batch * saved_acc == tr.batch_size * tr.accumulate_grad_batches and saved_batch < tr.batch_size:
            self.batch_size, self.accumulate = saved_batch, saved_acc  # keep an OOM-reduced batch
            self._log("info", f"keeping the batch size {saved_batch} x {saved_acc} accumulation the run "
                              f"reduced to after running out of memory")
        self._log("info", f"resuming from {resume['_path']}: {plural(self.epochs_completed, 'epoch')} done, step {self.step}")
        return model, _State(None, resume.get("optimizer"), self.epochs_completed, self.step, self.best_f1)

    def _fit_once(self, model: Any, state: _State) -> None:
        import lightning as L

        from medseg_gui.core.engine.callbacks import CallbackHooks, EventCallback, cuda_vram_probe
        from medseg_gui.core.engine.lit_module import RunPosition

        tr = self.config.training
        if state.model is not None:
            model.load_state_dict(state.model)
        model.train()  # from_pretrained returns eval mode (dropout off, frozen BatchNorm statistics)
        self.epochs_completed, self.step, self.best_f1 = state.epochs_completed, state.step, state.best_f1
        remaining = tr.epochs - self.epochs_completed
        if remaining <= 0:
            self._log("info", f"all {plural(tr.epochs, 'epoch')} are already done; raise training.epochs to train more")
            return
        data_config = self.config.copy()
        data_config.training.batch_size = self.batch_size
        accelerator = precision_rules.resolve_accelerator(tr.accelerator)
        if accelerator == "cpu":  # threads and loader workers that do not collapse on a busy machine
            cpu = configure_cpu_training(tr.num_workers, processes=tr.devices * self.num_nodes, log=self._log)
            data_config.training.num_workers = cpu.loader_workers
        datamodule = self.datamodule_factory(data_config)
        devices = self._training_devices(accelerator)  # CUDA ordinals: exactly the configured/chosen GPUs
        precision = precision_rules.resolve_precision(tr.precision, accelerator)
        graphs = self._graph_plan(accelerator, precision)
        plan = self._compile_plan(accelerator, datamodule, remaining, graphs.enabled)
        module = build_module(model, self.config,
                              position=RunPosition(self.epochs_completed, self.step, state.optimizer),
                              compile_mode=plan.mode, static_batch=self.batch_size, cuda_graphs=graphs.enabled,
                              graph_accumulate=self.accumulate if graphs.enabled else 1)
        module.fault_hook = self.fault_hook
        module.graph_log = self._log
        self._module = module
        vram = None
        if accelerator == "gpu":
            import torch

            # rank 0's card: the first of the ordinals (the sampler matches NVML's reading by its UUID)
            vram = cuda_vram_probe(devices[0] if isinstance(devices, list) and devices else torch.cuda.current_device())
        hooks = CallbackHooks(emit=self._emit, stop_event=self._stop, on_epoch_done=self._on_epoch_done,
                              run_started=self._run_started, is_rank_zero=self.rank == 0,
                              step_interval_s=self.step_event_interval_s, vram_probe=vram)
        callback = EventCallback(hooks, total_epochs=tr.epochs)
        # -- slowdown diagnosis (core/engine/diagnosis.py): last, so other callbacks count as compute
        tool_callbacks = [diagnosis_callback(self._emit, accelerator, self.config)] if self.rank == 0 else []
        strategy = self.strategy
        if strategy == "auto" and tr.devices * self.num_nodes > 1:
            strategy = "ddp"  # never ddp_spawn: it would pickle the model and the GUI's objects
        if graphs.enabled and tr.devices * self.num_nodes > 1:
            from medseg_gui.core.engine.grad_sync import graph_ddp_strategy

            strategy = graph_ddp_strategy()  # DDP's processes; the graphed step averages the gradients
        trainer = L.Trainer(**trainer_settings(
            # the graphed step accumulates itself (manual optimisation refuses Lightning's accumulation)
            accelerator=accelerator, devices=devices, precision=precision,
            accumulate=1 if graphs.enabled else self.accumulate,
            root=str(self.run_dir), num_nodes=self.num_nodes, strategy=strategy, max_epochs=remaining,
            sync_batchnorm=tr.sync_batchnorm and accelerator == "gpu" and tr.devices * self.num_nodes > 1,
            limit_train_batches=tr.max_steps_per_epoch or 1.0,
            callbacks=[callback, *tool_callbacks, *self.extra_callbacks],
            inference_mode=not plan.enabled))  # compiled graphs are traced under no_grad, not inference mode
        self._trainer = trainer
        self._in_channels = int(getattr(datamodule, "in_channels", 3) or 3)
        from medseg_gui.core.engine.callbacks import StopRequested

        try:
            trainer.fit(module, datamodule=datamodule)
        except StopRequested:
            pass
        finally:
            self.step = module.batches_done
            module.release_step_graph()  # before the process group goes (a live graph pins NCCL)
        if callback.stopping and self.rank == 0 and module.batches_done > state.step and self.run_dir:
            self._save_last(module, trainer, note="stopped")

    def _training_devices(self, accelerator: str) -> int | list[int]:
        """Lightning's ``devices``: on the GPU, the CUDA ordinals of training.gpus (or of the card(s) with
        the most free memory when it is empty), resolved once per run by UUID (core/gpu_identity.py).

        Also makes this process's card the current CUDA device, so everything that asks torch for
        "the" device before Lightning sets up (the VRAM sampler, the slowdown diagnosis, the memory
        check of the CUDA graph, bf16 support) speaks of the card that trains, and sets
        training.devices to the number of cards (the count follows training.gpus when it is set).
        """
        tr = self.config.training
        if accelerator != "gpu":
            return tr.devices
        if self._device_plan is None:
            try:
                plan = gi.plan_for_this_process(tr.gpus, tr.devices)
            except gi.GpuSelectionError as exc:
                raise _Failure(str(exc), hint="set training.gpus to GPUs that the Hardware page (or medseg hardware) lists, or empty it "
                               "to train on the card with the most free memory", kind="config") from None
            if tr.gpus and tr.devices != len(tr.gpus):
                self._log("warning", f"training.devices is {tr.devices} but training.gpus names {len(tr.gpus)} "
                                     f"GPU(s): training on the named GPUs")
            if plan.note:
                self._log("info", plan.note)
            if len(plan.ordinals) > 1 and not os.environ.get(gi.TRAIN_DEVICES_ENV):
                os.environ[gi.TRAIN_DEVICES_ENV] = ",".join(map(str, plan.ordinals))  # the DDP ranks inherit it
                self._set_devices_env = True
            self._device_plan = plan
        ordinals = self._device_plan.ordinals
        tr.devices = len(ordinals)
        import torch

        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if ordinals and torch.cuda.is_available() and ordinals[local % len(ordinals)] < torch.cuda.device_count():
            torch.cuda.set_device(ordinals[local % len(ordinals)])
        return list(ordinals)

    def _graph_plan(self, accelerator: str, precision: str) -> Any:
        """Whether this fit replays its step as a CUDA graph (core/planning/speed.py), logged with its reason."""
        tr = self.config.training
        plan = speed.plan_cuda_graphs(tr.cuda_graphs, on_cuda=accelerator == "gpu", devices=tr.devices * self.num_nodes,
                                precision=precision, accumulate=self.accumulate, strategy=self.strategy)
        if plan.enabled:
            plan = speed.check_graph_memory(plan, **self._graph_memory(precision))
        if plan.enabled or tr.cuda_graphs == "on" or "not used" in plan.reason:
            self._log("info" if plan.enabled else "warning", plan.reason)
        return plan

    def _graph_memory(self, precision: str) -> dict[str, float | None]:
        """Predicted peaks with and without the graph, and the memory budget (GB) they must fit.

        Same peak function and same free-memory basis as ``recommend`` (core/planning/recommend.py): a plan
        sized there keeps its graph here."""

        none: dict[str, float | None] = {"graph_gb": None, "eager_gb": None, "budget_gb": None}
        model = default_memory_model()
        free = hardware.free_for_plan_gb() if model is not None else None
        if model is None or free is None:
            return none
        try:
            eager = float(predicted_peak(model, self.config, self.batch_size, graphs=False, compiled=False))
            graph = float(predicted_peak(model, self.config, self.batch_size, graphs=True, compiled=False))
        except KeyError:
            return none
        return {"graph_gb": graph, "eager_gb": eager, "budget_gb": free - safety_margin(free)}

    def _compile_plan(self, accelerator: str, datamodule: Any, remaining_epochs: int,
                      whole_step_graph: bool = False) -> Any:
        """Whether this fit compiles (core/planning/speed.py), logged with its reason."""
        tr = self.config.training
        steps = _dataset_len(datamodule, "train") // max(1, self.batch_size)
        if tr.max_steps_per_epoch:
            steps = min(steps, tr.max_steps_per_epoch)
        plan = speed.plan_compile(tr.compile, on_cuda=accelerator == "gpu", devices=tr.devices * self.num_nodes,
                            total_steps=steps * remaining_epochs // max(1, self.accumulate) * self.accumulate,
                            whole_step_graph=whole_step_graph)
        if tr.compile != "off" or plan.enabled:
            self._log("info", plan.reason)
        return plan

    def _run_started(self, trainer: Any, module: Any) -> RunStarted | None:
        if self._started_emitted:
            return None
        self._started_emitted = True
        dm = trainer.datamodule
        return RunStarted(run_dir=str(self.run_dir), config=self.config.to_dict(), device=_device_name(trainer),
                          epochs=self.config.training.epochs, steps_per_epoch=_finite_int(trainer.num_training_batches),
                          train_images=_dataset_len(dm, "train"), val_images=_dataset_len(dm, "val"),
                          resumed_from_step=self.step, vram_total_gb=_vram_total(trainer),
                          predicted_peak_gb=self._predicted_peak(trainer, module))

    def _predicted_peak(self, trainer: Any, module: Any) -> float | None:
        """The memory model's peak for what actually runs (batch after OOM halving, compiled or not,
        graphed or not), from the same function ``recommend`` sizes plans with, so the two agree."""
        if _vram_total(trainer) is None:
            return None

        model = default_memory_model()
        if model is None:
            return None
        try:
            return float(predicted_peak(model, self.config, self.batch_size,
                                        graphs=bool(getattr(module, "cuda_graphs", False)),
                                        compiled=bool(getattr(module, "compile_mode", None))))
        except KeyError:
            return None

    def _on_epoch_done(self, trainer: Any, module: Any, record: Any) -> list[Checkpointed]:
        """Rank 0 after each epoch: metrics.csv row, then best.ckpt when the headline score improved, then last.ckpt.

        Best before last: a crash between the two leaves last.ckpt one epoch behind (the resume redoes
        that epoch and drops its metrics row) while best.ckpt already holds the better weights, whose
        score the resume reads back from best.ckpt (``_reconcile_best``)."""
        self.epochs_completed, self.step = record.epoch, record.step
        names = self.config.dataset.class_names
        row = {"epoch": record.epoch, "step": record.step, "train_loss": record.train_loss,
               "val_loss": record.val_loss, "val_f1": record.val_f1, "lr": record.lr,
               "epoch_time_s": record.epoch_time_s, "batch_size": self.batch_size,
               "accumulate_grad_batches": self.accumulate}
        for i, name in enumerate(names):
            row[f"dice_{name}"] = record.dice[i] if i < len(record.dice) else None
            row[f"iou_{name}"] = record.iou[i] if i < len(record.iou) else None
        assert self._csv is not None and self.run_dir is not None
        self._csv.append(row)
        improved = record.val_f1 is not None and (self.best_f1 is None or record.val_f1 > self.best_f1)
        if improved:
            self.best_f1 = record.val_f1
        best_path, last_path = runs.checkpoint_paths(self.run_dir)
        events = [Checkpointed(path=str(last_path), epoch=record.epoch, step=record.step,
                               is_best=False, metric=record.val_f1)]
        if improved or (record.val_f1 is None and not best_path.exists()):
            self._save_checkpoint(best_path, module, trainer, val_f1=record.val_f1)
            _copy_atomic(best_path, last_path)  # the same state: copy rather than serialise twice
            events.append(Checkpointed(path=str(best_path), epoch=record.epoch, step=record.step,
                                       is_best=True, metric=record.val_f1))
        else:
            self._save_last(module, trainer, val_f1=record.val_f1)
        return events

    def _save_checkpoint(self, path: Path, module: Any, trainer: Any, val_f1: float | None) -> None:
        optimizer = trainer.optimizers[0].state_dict() if trainer.optimizers else None
        runs.save_checkpoint(path, model_state=module.model.state_dict(), optimizer_state=optimizer,
                             epochs_completed=self.epochs_completed, step=module.batches_done,
                             best_f1=self.best_f1, batch_size=self.batch_size,
                             accumulate_grad_batches=self.accumulate, config=self.config, val_f1=val_f1)

    def _save_last(self, module: Any, trainer: Any, val_f1: float | None = None, note: str = "") -> None:
        assert self.run_dir is not None
        _, last_path = runs.checkpoint_paths(self.run_dir)
        self._save_checkpoint(last_path, module, trainer, val_f1)
        if note:
            self._log("info", f"saved the {note} state to {last_path} (resume restarts epoch "
                              f"{self.epochs_completed + 1} from these weights)")

    def _recover_from_oom(self, model: Any, detail: str) -> _State:
        tr = self.config.training
        old = self.batch_size
        step_at_oom = getattr(getattr(self, "_module", None), "batches_done", self.step)
        self._trainer = self._module = None  # type: ignore[assignment]
        for param in model.parameters():
            param.grad = None  # the failed step's partial gradients must not leak into the restart
        free_cuda()
        if tr.devices * self.num_nodes > 1:
            raise _Failure("out of GPU memory on one of the devices", kind="oom", detail=detail,
                           hint="lower training.batch_size (or image size / variant) and start again; "
                                "automatic recovery works on a single device only")
        if old <= 1:
            raise _Failure("out of GPU memory even with a batch of 1", kind="oom", detail=detail,
                           hint="choose a smaller model variant or image size, close other programs using the "
                                "GPU, or train on the CPU")
        state = self._last_good_state()
        self.batch_size = old // 2
        self.accumulate *= 2
        message = (f"out of memory at step {step_at_oom} with batch {old}: continuing with batch {self.batch_size} "
                   f"x {self.accumulate} accumulation (same effective batch) from step {state.step}")
        self._emit(OomRecovered(step=state.step, old_batch_size=old, new_batch_size=self.batch_size,
                                accumulate_grad_batches=self.accumulate, message=message))
        self._log("warning", message)
        return state

    def _last_good_state(self) -> _State:
        assert self.run_dir is not None
        _, last_path = runs.checkpoint_paths(self.run_dir)
        if last_path.exists():
            data = runs.load_checkpoint(last_path)
            # self.best_f1 is best.ckpt's score; a resumed last.ckpt may record an older one
            return _State(data["model"], data.get("optimizer"), int(data["epochs_completed"]), int(data["step"]),
                          self.best_f1)
        return self._initial_state

    def _finished(self, start: float, stopped: bool) -> RunFinished:
        bundle_dir = None
        best_path = last_path = None
        if self.run_dir is not None:
            best_path, last_path = runs.checkpoint_paths(self.run_dir)
        if self.rank == 0 and best_path is not None:
            source = best_path if best_path.exists() else None
            if source is not None:
                self._emit(PhaseChanged(phase="exporting"))
                bundle_dir = str(self._export_bundle(source))
        return RunFinished(run_dir=str(self.run_dir or ""), stopped_early=stopped, best_f1=self.best_f1,
                           best_checkpoint=str(best_path) if best_path is not None and best_path.exists() else None,
                           bundle_dir=bundle_dir, epochs_done=self.epochs_completed, steps_done=self.step,
                           duration_s=time.time() - start)

    def _export_bundle(self, checkpoint: Path) -> Path:
        """The best weights into ``run_dir/bundle`` (the training model object is reused: the run is over)."""
        assert self.run_dir is not None and self._model is not None
        data = runs.load_checkpoint(checkpoint)
        self._model.load_state_dict(data["model"])
        in_channels = getattr(self, "_in_channels", 3)
        return save_bundle(self._model, self.config, self.run_dir / runs.BUNDLE_DIR, source_run=self.run_dir.name,
                           in_channels_hint=in_channels)

    # ---- events --------------------------------------------------------------------------------
    def _log(self, level: str, message: str) -> None:
        self._emit(LogMessage(level=level, message=message))

    def _emit_everywhere(self, event: Event) -> None:
        """events.jsonl, then the front end; a failed file write (a full disk) still reaches the
        front end before it propagates and ends the run."""
        assert self._file_sink is not None
        try:
            self._file_sink(event)
        finally:
            self.user_sink(event)

    def _safe_emit(self, event: Event) -> None:
        sinks = [self._emit] if self._file_sink is None else [self._file_sink, self.user_sink]
        for sink in sinks:
            try:
                sink(event)
            except Exception:  # noqa: BLE001 — a broken sink (or a full disk) must not hide the result
                pass

    def _is_failed_start(self, result: RunFinished | RunFailed) -> bool:
        """A new run's folder (made by this session, or empty before it) that ended before training
        began — it failed before the run started, or the user's Stop came before the first step: nothing
        in it is worth keeping, and left behind it would be listed as an empty run. A resumed run's folder
        is never a failed start; a checkpoint or bundle in the folder is always kept."""
        if self.rank != 0 or not self._fresh_run_dir or self.run_dir is None:
            return False
        if isinstance(result, RunFailed):
            if self._started_emitted:
                return False
        elif not result.stopped_early or self._started_emitted or self.step > 0:
            return False
        best, last = runs.checkpoint_paths(self.run_dir)
        return not (best.exists() or last.exists() or (self.run_dir / runs.BUNDLE_DIR).exists())

    def _close(self, discard: bool = False) -> None:
        if self._set_devices_env:
            os.environ.pop(TRAIN_DEVICES_ENV, None)
            self._set_devices_env = False
        if self.rank == 0 and self.run_dir is not None and os.environ.get(RUN_DIR_ENV) == str(self.run_dir):
            if self._previous_run_dir_env is None:
                os.environ.pop(RUN_DIR_ENV, None)
            else:
                os.environ[RUN_DIR_ENV] = self._previous_run_dir_env
        if self._events_file is not None:
            try:
                self._events_file.close()
            except OSError:  # a full disk refusing the last flush
                pass
            self._events_file = None
        if discard and self.run_dir is not None:
            _remove_our_files(self.run_dir)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if discard and self.run_dir is not None:
            for folder in (self.run_dir / runs.CHECKPOINT_DIR, self.run_dir)[:2 if self._created_run_dir else 1]:
                try:
                    folder.rmdir()  # only when empty: anything someone else put there stays
                except OSError:
                    pass


def _finite_int(value: float) -> int:
    """Batches per epoch; 0 when unknown (an iterable dataset without a length reports inf)."""
    return int(value) if math.isfinite(value) else 0


def _device_name(trainer: Any) -> str:
    root = getattr(trainer.strategy, "root_device", None)
    if root is not None and root.type == "cuda":
        import torch

        return torch.cuda.get_device_name(root)
    return "cpu" if root is None else root.type


def _vram_total(trainer: Any) -> float | None:
    root = getattr(trainer.strategy, "root_device", None)
    if root is None or root.type != "cuda":
        return None
    import torch

    return torch.cuda.get_device_properties(root).total_memory / 1024**3


def _dataset_len(datamodule: Any, which: str) -> int:
    """Dataset sizes for RunStarted, from the datamodule's usual attribute names (0 if unknown)."""
    for name in (f"{which}_dataset", f"{which}_set", f"{which}_ds", f"_{which}_dataset"):
        ds = getattr(datamodule, name, None)
        if ds is not None:
            try:
                return len(ds)
            except TypeError:
                return 0
    return 0


def _write_failure(exc: OSError, where: Path) -> _Failure:
    """A run folder that cannot be created or written (read-only, no permission, full): one line."""
    if is_disk_full(exc):
        return _Failure(f"disk full while writing {exc.filename or where}", kind="disk",
                        hint="free some disk space or choose another output folder")
    return _Failure(f"cannot write the run folder {where}: {exc.strerror or exc}", kind="run_dir",
                    hint="choose a folder you can write to (training.output_dir, or --run-dir)")


def _owning_run(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if it is in one."""
    return ckpt.parent.parent if ckpt.parent.name == runs.CHECKPOINT_DIR else None


def _same_path(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _remove_our_files(run_dir: Path) -> None:
    """What a session writes into a run folder before training starts; nothing else is touched."""
    for name in (runs.CONFIG_FILE, runs.EVENTS_FILE, runs.METRICS_FILE, runs.ENV_FILE):
        try:
            (run_dir / name).unlink(missing_ok=True)
        except OSError:
            pass
    remove_stale_temps(run_dir)
    remove_stale_temps(run_dir / runs.CHECKPOINT_DIR)


def _copy_atomic(src: Path, dst: Path) -> None:
    import shutil

    atomic.atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))  # streamed: a checkpoint can be gigabytes


