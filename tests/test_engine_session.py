"""Training sessions end to end on a tiny model and synthetic data (CPU, a few seconds each)."""

from __future__ import annotations

import threading

import pytest
import torch

from medseg_gui.core import runs
from medseg_gui.core.engine.bundle import load_bundle
from medseg_gui.core.events import (Checkpointed, EpochMetrics, OomRecovered, PhaseChanged, RunFailed, RunFinished,
                                    RunStarted, StepMetrics, read_jsonl)
from medseg_gui.core.engine.session import TrainingSession

from engine_helpers import FakeDataModule, tiny_config

pytestmark = pytest.mark.slow


def _run(config, **kwargs):
    events = []
    session = TrainingSession(config, events.append, datamodule_factory=kwargs.pop("dm", None) or FakeDataModule(16, 4),
                              step_event_interval_s=0.0, **kwargs)
    return session, session.run(), events


def _of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_two_epochs_loss_falls_and_run_folder_is_complete(tmp_path):
    config = tiny_config(tmp_path, epochs=2, use_scheduler=False)
    session, result, events = _run(config)
    assert isinstance(result, RunFinished), getattr(result, "detail", result)
    assert not result.stopped_early and result.epochs_done == 2 and result.steps_done == 8
    epochs = _of(events, EpochMetrics)
    assert [e.epoch for e in epochs] == [1, 2]
    assert epochs[1].train_loss < epochs[0].train_loss
    assert epochs[1].val_loss < epochs[0].val_loss
    assert len(epochs[0].per_class_dice) == 3 and 0 <= epochs[1].val_f1 <= 1
    started = _of(events, RunStarted)
    assert len(started) == 1 and started[0].steps_per_epoch == 4 and started[0].train_images == 16
    steps = _of(events, StepMetrics)
    assert [s.step for s in steps] == list(range(1, 9))  # interval 0: every step reported
    assert all(s.images_per_s and s.images_per_s > 0 for s in steps) and steps[-1].eta_s is not None

    run_dir = session.run_dir
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.endswith("_b0_demo")
    for name in ("config.toml", "events.jsonl", "metrics.csv", "environment.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "bundle/model.safetensors"):
        assert (run_dir / name).is_file(), name
    on_disk = read_jsonl(run_dir / "events.jsonl")
    assert [type(e).__name__ for e in on_disk] == [type(e).__name__ for e in events]
    rows = runs.read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_loss"] == pytest.approx(epochs[1].train_loss, rel=1e-4)
    best = max(epochs, key=lambda e: e.val_f1)
    assert result.best_f1 == pytest.approx(best.val_f1)
    assert runs.load_checkpoint(run_dir / "checkpoints/best.ckpt")["epochs_completed"] == best.epoch
    assert _of(events, Checkpointed)[-1].path.endswith("last.ckpt") or best.epoch == 2

    model, info = load_bundle(run_dir / "bundle")
    best_state = runs.load_checkpoint(run_dir / "checkpoints/best.ckpt")["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best_state.items())
    assert info.num_classes == 3

    listed = runs.list_runs(tmp_path / "runs")
    assert [s.run_dir for s in listed] == [run_dir] and listed[0].status == "finished" and listed[0].has_bundle
    record = runs.load_run(run_dir)
    assert record.config.training.epochs == 2 and len(record.metrics) == 2


def test_an_untrained_model_scores_low(tmp_path):
    """Guards the validation path against label leaks: next to no training must give a poor score."""
    config = tiny_config(tmp_path, epochs=1, lr=1e-7, max_steps_per_epoch=1)
    _, result, events = _run(config)
    (epoch,) = _of(events, EpochMetrics)
    assert epoch.val_f1 < 0.5 and max(epoch.per_class_dice[1:]) < 0.5
    steps = _of(events, StepMetrics)
    assert steps[-1].lr == pytest.approx(1e-7)  # the epoch's lr, not the next epoch's


def test_stop_from_another_thread_ends_within_one_batch_without_validation(tmp_path):
    config = tiny_config(tmp_path, epochs=3)
    reached, release = threading.Event(), threading.Event()
    calls = []

    def hook(module, batch_size):
        calls.append(module.batches_done)
        if len(calls) == 2:  # mid-epoch: Lightning would force a validation on should_stop
            reached.set()
            release.wait(10)

    holder = {}
    session = TrainingSession(config, (events := []).append, datamodule_factory=FakeDataModule(16, 4),
                              fault_hook=hook, step_event_interval_s=0.0)
    worker = threading.Thread(target=lambda: holder.setdefault("result", session.run()))
    worker.start()
    assert reached.wait(60)
    session.stop()  # from this (non-training) thread
    release.set()
    worker.join(60)
    result = holder["result"]
    assert isinstance(result, RunFinished) and result.stopped_early
    assert len(calls) == 2 and result.steps_done == 2
    assert not [e for e in events if isinstance(e, PhaseChanged) and e.phase == "validating"]
    assert not _of(events, EpochMetrics)
    last = runs.load_checkpoint(session.run_dir / "checkpoints/last.ckpt")
    assert last["step"] == 2 and last["epochs_completed"] == 0


def test_stop_during_validation_ends_at_the_next_validation_batch(tmp_path):
    config = tiny_config(tmp_path, epochs=3)
    events = []

    def sink(event):
        events.append(event)
        if isinstance(event, PhaseChanged) and event.phase == "validating":
            session.stop()  # the sink runs on the training thread, inside on_validation_start

    session = TrainingSession(config, sink, datamodule_factory=FakeDataModule(16, 4))
    result = session.run()
    assert isinstance(result, RunFinished) and result.stopped_early, getattr(result, "detail", result)
    assert not _of(events, EpochMetrics) and result.steps_done == 4
    assert runs.load_checkpoint(session.run_dir / "checkpoints/last.ckpt")["step"] == 4


def test_injected_oom_halves_batch_doubles_accumulation_and_continues(tmp_path):
    config = tiny_config(tmp_path, epochs=2, batch_size=4, accumulate_grad_batches=1)
    fired = []

    def hook(module, batch_size):
        if batch_size > 2 and module.batches_done >= 5 and not fired:  # second epoch, second batch
            fired.append(module.batches_done)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    dm = FakeDataModule(16, 4)
    session, result, events = _run(config, fault_hook=hook, dm=dm)
    assert isinstance(result, RunFinished), getattr(result, "detail", result)
    (oom,) = _of(events, OomRecovered)
    assert (oom.old_batch_size, oom.new_batch_size, oom.accumulate_grad_batches) == (4, 2, 2)
    assert oom.step == 4  # restarted from the end of epoch 1 (last.ckpt)
    assert dm.built == [4, 2]
    rows = runs.read_metrics(session.run_dir / "metrics.csv")
    assert [(r["epoch"], r["batch_size"], r["accumulate_grad_batches"]) for r in rows] == [(1, 4, 1), (2, 2, 2)]
    assert result.steps_done == 4 + 8  # epoch 2 ran 8 batches of 2
    assert any(isinstance(e, OomRecovered) for e in read_jsonl(session.run_dir / "events.jsonl"))


def test_oom_at_batch_one_fails_cleanly(tmp_path):
    config = tiny_config(tmp_path, epochs=1, batch_size=1)

    def hook(module, batch_size):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    session, result, events = _run(config, fault_hook=hook)
    assert isinstance(result, RunFailed) and result.kind == "oom" and result.hint
    assert events[-1] is result and (session.run_dir / "config.toml").is_file()
    assert runs.list_runs(tmp_path / "runs")[0].status == "failed"


def test_resume_continues_epoch_and_step_count(tmp_path):
    first, result, _ = _run(tiny_config(tmp_path, epochs=1))
    assert isinstance(result, RunFinished) and result.steps_done == 4
    config = tiny_config(tmp_path, epochs=2)
    session, result, events = _run(config, resume_from=first.run_dir)
    assert isinstance(result, RunFinished), getattr(result, "detail", result)
    assert session.run_dir == first.run_dir
    assert _of(events, RunStarted)[0].resumed_from_step == 4
    assert _of(events, StepMetrics)[0].step == 5 and _of(events, EpochMetrics)[0].epoch == 2
    assert result.steps_done == 8 and result.epochs_done == 2
    assert [r["epoch"] for r in runs.read_metrics(session.run_dir / "metrics.csv")] == [1, 2]


def test_resume_refuses_a_pickled_checkpoint(tmp_path):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"format": 1, "model": {}, "payload": _Evil()}, ckpt)
    with pytest.raises(runs.CheckpointError, match="pickled Python objects"):
        runs.load_checkpoint(ckpt)
    _, result, _ = _run(tiny_config(tmp_path, epochs=1), resume_from=ckpt)
    assert isinstance(result, RunFailed) and result.kind == "config" and "pickled" in result.reason


def test_bad_config_is_a_failure_event_not_an_exception(tmp_path):
    config = tiny_config(tmp_path)
    config.training.batch_size = 0
    _, result, events = _run(config)
    assert isinstance(result, RunFailed) and result.kind == "config" and "training.batch_size" in result.reason


class _Evil:
    """Stands for any pickled object; unpickling it could run arbitrary code."""
