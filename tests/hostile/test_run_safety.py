"""Hostile inputs against run folders and training writes: nothing a user trained is ever lost.

Covers: a new run refused on an existing run folder (CLI exit 2, nothing touched); the run lock
(a second session, a live process, a dead one, another host, DDP child ranks); crash points between
the checkpoint writes resuming to best score = best file = bundle; partial events/metrics lines; a
full disk; a folder that cannot be written; a failed start leaving no folder; temp files; the umask;
refused pickles in our own words.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medseg_gui.core import atomic, runs
from medseg_gui.core import config as cfg
from medseg_gui.core.events import LogMessage, RunFailed, RunFinished, RunStarted, open_jsonl_append, read_jsonl
from medseg_gui.core.run_lock import LOCK_FILE, RunLock, RunLocked, this_host

from engine_helpers import FakeDataModule, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- helpers -----------------------------------------------------------------------------------------
def _session(config, **kwargs):
    from medseg_gui.core.engine.session import TrainingSession

    events: list = []
    session = TrainingSession(config, events.append, datamodule_factory=kwargs.pop("dm", None) or FakeDataModule(8, 4),
                              step_event_interval_s=0.0, **kwargs)
    return session, events


def _light_config(tmp_path: Path) -> cfg.RunConfig:
    """For tests that must stop before any model is built (no tiny model to write)."""
    config = cfg.RunConfig()
    config.training.epochs = 1
    config.training.output_dir = str(tmp_path / "runs")
    return config


def _fake_run(folder: Path, config: cfg.RunConfig) -> Path:
    """A run folder as a finished run leaves it (made by hand: refusals must not need a training)."""
    (folder / runs.CHECKPOINT_DIR).mkdir(parents=True)
    cfg.save(config, folder / runs.CONFIG_FILE)
    runs.checkpoint_paths(folder)[0].write_bytes(b"the user's best model")
    runs.checkpoint_paths(folder)[1].write_bytes(b"the user's last state")
    (folder / runs.METRICS_FILE).write_text("epoch,step\n1,4\n")
    (folder / runs.EVENTS_FILE).write_text('{"type":"LogMessage","level":"info","message":"x","time":1}\n')
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _temps(folder: Path) -> list[Path]:
    """Temp files of our naming pattern (a user's own *.tmp is none of our business)."""
    return [p for p in folder.rglob("*") if atomic.is_our_temp_name(p.name)]


# ---- a new run never lands on an existing one -------------------------------------------------------
def test_a_new_run_on_an_existing_run_folder_is_refused_and_nothing_changes(tmp_path):
    config = _light_config(tmp_path)
    run = _fake_run(tmp_path / "myrun", config)
    before = _snapshot(run)
    session, events = _session(config, run_dir=run)
    result = session.run()
    assert isinstance(result, RunFailed) and result.kind == "run_dir"
    assert "already holds a training run" in result.reason and "--resume" in result.reason
    assert "\n" not in result.reason
    assert _snapshot(run) == before and not (run / LOCK_FILE).exists()


@pytest.mark.parametrize("content", ["file", "folder"])
def test_a_new_run_in_a_folder_holding_other_things_is_refused(tmp_path, content):
    config = _light_config(tmp_path)
    target = tmp_path / "notes"
    if content == "folder":
        target.mkdir()
        (target / runs.CONFIG_FILE).write_text("mine")  # would be replaced by the run's config
    else:
        target.write_text("a file, not a folder")
    session, _ = _session(config, run_dir=target)
    result = session.run()
    assert isinstance(result, RunFailed) and result.kind == "run_dir"
    if content == "folder":
        assert (target / runs.CONFIG_FILE).read_text() == "mine"
        assert sorted(p.name for p in target.iterdir()) == [runs.CONFIG_FILE]
    else:
        assert target.read_text() == "a file, not a folder"


@pytest.mark.slow
def test_cli_train_onto_an_existing_run_exits_2_with_one_line(tmp_path, capsys):
    from medseg_gui.cli import main

    config = tiny_config(tmp_path, epochs=1)
    config.dataset.path = "demo"
    run = _fake_run(tmp_path / "myrun", config)
    config_file = cfg.save(config, tmp_path / "c.toml")
    before = _snapshot(run)
    rc = main(["train", "--config", str(config_file), "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(run) in lines[0] and "Traceback" not in err
    assert _snapshot(run) == before


# ---- the run lock ------------------------------------------------------------------------------------
def test_a_second_lock_on_one_run_folder_is_refused_and_release_frees_it(tmp_path):
    first = RunLock(tmp_path).acquire()
    owner = json.loads((tmp_path / LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == this_host() and owner["started"] > 0
    with pytest.raises(RunLocked, match=rf"in use by process {os.getpid()} on {this_host()}"):
        RunLock(tmp_path).acquire()
    first.release()
    first.release()  # idempotent
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path) as again:
        assert again.held and again.taken_over is None
    assert not (tmp_path / LOCK_FILE).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = _dead_pid()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead, "host": this_host(), "started": 1.0}))
    lock = RunLock(tmp_path).acquire()
    assert lock.taken_over is not None and lock.taken_over.pid == dead
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_written_on_another_host_is_reported_with_that_host(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "gpu-node-17", "started": 1.0}))
    with pytest.raises(RunLocked, match="process 4242 on gpu-node-17") as info:
        RunLock(tmp_path).acquire()
    assert str(tmp_path / LOCK_FILE) in str(info.value)  # says what to delete if that run is gone
    assert json.loads((tmp_path / LOCK_FILE).read_text())["host"] == "gpu-node-17"  # left alone


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_a_live_process_holds_the_lock_until_killed(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from medseg_gui.core.run_lock import RunLock; "
         f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"process {holder.pid}"):
            RunLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the lock file stays
        holder.wait(60)
        assert (tmp_path / LOCK_FILE).exists()
        lock = RunLock(tmp_path).acquire()
        assert lock.taken_over is not None and lock.taken_over.pid == holder.pid
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(60)


@pytest.mark.slow
def test_cli_resume_of_a_run_another_process_trains_exits_2_naming_it(tmp_path, capsys):
    from medseg_gui.cli import main

    run = _fake_run(tmp_path / "myrun", _light_config(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from medseg_gui.core.run_lock import RunLock; "
         f"RunLock({str(run)!r}).acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(run)
        rc = main(["train", "--resume", str(run)])
        err = capsys.readouterr().err
        assert _snapshot(run) == before
    finally:
        holder.communicate("", timeout=60)
    assert rc == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"in use by process {holder.pid} on {this_host()}" in line and "Traceback" not in err


def test_a_locked_run_refuses_a_resume_and_is_not_written(tmp_path):
    config = _light_config(tmp_path)
    run = _fake_run(tmp_path / "myrun", config)
    held = RunLock(run).acquire()
    before = _snapshot(run)
    try:
        session, events = _session(config, resume_from=run)
        result = session.run()
    finally:
        held.release()
    assert isinstance(result, RunFailed) and result.kind == "run_busy"
    assert f"in use by process {os.getpid()}" in result.reason
    before.pop(LOCK_FILE)
    assert _snapshot(run) == before  # not even an event appended


def test_ddp_child_ranks_work_inside_rank_zero_lock(tmp_path, monkeypatch):
    from medseg_gui.core.engine.session import RUN_DIR_ENV

    config = _light_config(tmp_path)
    run = _fake_run(tmp_path / "myrun", config)
    held = RunLock(run).acquire()  # rank 0's
    try:
        monkeypatch.setenv("LOCAL_RANK", "1")
        monkeypatch.setenv(RUN_DIR_ENV, str(run))
        session, _ = _session(config)
        assert session.rank == 1
        session._claim_run_dir(None)
        assert session.run_dir == run and session._lock is None
    finally:
        held.release()


# ---- crash points between checkpoint writes -----------------------------------------------------------
class _Crash(BaseException):
    """Stands for kill -9: not an Exception, so nothing on the way out treats it as a failure."""


SCORES = {"first": {1: 0.3, 2: 0.6}, "resumed": {2: 0.5}}


def _scored(monkeypatch, scores: dict[int, float]) -> None:
    """Validation F1 fixed per epoch, so epoch 2 improves in the first run and not in the resume."""
    from medseg_gui.core.engine.session import TrainingSession

    original = TrainingSession._on_epoch_done

    def on_epoch_done(self, trainer, module, record):
        record.val_f1 = scores[record.epoch]
        return original(self, trainer, module, record)

    monkeypatch.setattr(TrainingSession, "_on_epoch_done", on_epoch_done)


def _crash_on_checkpoint_write(monkeypatch, epoch: int, index: int, midway: bool) -> list[str]:
    """Crash before (or halfway through) the ``index``-th checkpoint write of ``epoch``, whatever
    order the session writes its files in."""
    from medseg_gui.core.engine import session as session_mod
    real = atomic.atomic_write
    seen: list[str] = []
    current_epoch = [0]  # the epoch whose checkpoints are being written (0: none)

    def guarded(path, write):
        path = Path(path)
        if path.parent.name == runs.CHECKPOINT_DIR and current_epoch[0] == epoch:
            seen.append(path.name)
            if len(seen) - 1 == index:
                if not midway:
                    raise _Crash()

                def half(tmp):
                    tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
                    raise _Crash()

                return real(path, half)
        return real(path, write)

    original = session_mod.TrainingSession._on_epoch_done

    def tracking(self, trainer, module, record):
        current_epoch[0] = record.epoch
        try:
            return original(self, trainer, module, record)
        finally:
            current_epoch[0] = 0

    monkeypatch.setattr(session_mod.TrainingSession, "_on_epoch_done", tracking)
    monkeypatch.setattr(atomic, "atomic_write", guarded)
    monkeypatch.setattr(runs, "atomic_write", guarded)
    return seen


def _assert_consistent(run: Path, result) -> None:
    import torch

    from medseg_gui.core.engine.bundle import load_bundle

    assert isinstance(result, RunFinished), getattr(result, "detail", result)
    best_path, _ = runs.checkpoint_paths(run)
    epochs, best_score = runs.checkpoint_score(best_path)
    assert result.best_f1 == pytest.approx(best_score)
    model, _ = load_bundle(run / runs.BUNDLE_DIR)
    best_state = runs.load_checkpoint(best_path)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best_state.items())
    rows = runs.read_metrics(run / runs.METRICS_FILE)
    assert [r["epoch"] for r in rows] == [1, 2]  # no duplicated or missing rows
    assert not _temps(run)


@pytest.mark.slow
@pytest.mark.parametrize("index,midway", [(0, False), (0, True), (1, False), (1, True), (2, False)],
                         ids=["before-1st-write", "during-1st-write", "between-writes", "during-2nd-write",
                              "after-writes"])
def test_a_crash_at_any_checkpoint_write_resumes_consistently(tmp_path, monkeypatch, index, midway):
    config = tiny_config(tmp_path, epochs=2, batch_size=4)
    with monkeypatch.context() as patch:
        _scored(patch, SCORES["first"])
        seen = _crash_on_checkpoint_write(patch, epoch=2, index=index, midway=midway)
        session, _ = _session(config)
        if index < 2:
            with pytest.raises(_Crash):
                session.run()
        else:
            assert isinstance(session.run(), RunFinished)
        run = session.run_dir
        assert len(seen) == min(index + 1, 2)  # the crash came where asked; two writes when improved
    assert not _temps(run)  # an interrupted atomic write removes its temp file
    # what a crash also leaves: a half-written event line, a temp file of ours, the lock of a dead process
    with open(run / runs.EVENTS_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"type":"LogMessage","level":"info","mess')
    (run / runs.CHECKPOINT_DIR / ".last.ckpt.abcd_123.tmp").write_bytes(b"left by kill -9")
    (run / runs.CHECKPOINT_DIR / "my-notes.tmp").write_text("the user's")
    (run / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": this_host(), "started": 1.0}))

    _scored(monkeypatch, SCORES["resumed"])
    resumed, events = _session(tiny_config(tmp_path, epochs=2, batch_size=4), resume_from=run)
    result = resumed.run()
    assert resumed.run_dir == run
    _assert_consistent(run, result)
    expected = 0.6 if index >= 1 else 0.5  # best.ckpt of the crashed epoch 2 is kept once written
    assert result.best_f1 == pytest.approx(expected)
    assert not (run / runs.CHECKPOINT_DIR / ".last.ckpt.abcd_123.tmp").exists()
    assert (run / runs.CHECKPOINT_DIR / "my-notes.tmp").read_text() == "the user's"
    logs = " ".join(e.message for e in events if isinstance(e, LogMessage))
    assert "took over the lock" in logs and ".last.ckpt.abcd_123.tmp" in logs
    on_disk = read_jsonl(run / runs.EVENTS_FILE)
    assert any(isinstance(e, RunStarted) for e in on_disk) and isinstance(on_disk[-1], RunFinished)
    assert not (run / LOCK_FILE).exists()


def test_resume_reads_the_best_score_from_best_ckpt_not_from_last(tmp_path, monkeypatch):
    """The reconciliation alone, on hand-made checkpoints (fast): last.ckpt one improvement behind."""
    import torch

    config = _light_config(tmp_path)
    run = tmp_path / "run"
    (run / runs.CHECKPOINT_DIR).mkdir(parents=True)
    cfg.save(config, run / runs.CONFIG_FILE)
    best_path, last_path = runs.checkpoint_paths(run)
    state = {"w": torch.zeros(2)}
    common = dict(model_state=state, optimizer_state=None, step=4, batch_size=4, accumulate_grad_batches=1,
                  config=config)
    runs.save_checkpoint(best_path, epochs_completed=2, best_f1=0.6, val_f1=0.6, **common)
    runs.save_checkpoint(last_path, epochs_completed=1, best_f1=0.3, val_f1=0.3, **common)
    session, events = _session(config, resume_from=run)
    checkpoint = session._resume_checkpoint()
    session._claim_run_dir(checkpoint)
    try:
        resume = session._load_resume(checkpoint)
    finally:
        session._close()
    assert resume["best_f1"] == pytest.approx(0.6)
    assert any("0.6000" in note and "0.3000" in note for note in session._notes)
    best_path.unlink()  # a best checkpoint that is gone is not reported
    session, _ = _session(config, resume_from=run)
    session._claim_run_dir(session._resume_checkpoint())
    try:
        assert session._load_resume(last_path)["best_f1"] is None
    finally:
        session._close()


# ---- partial lines -------------------------------------------------------------------------------------
def test_an_events_file_ending_in_a_partial_line_is_not_glued_onto(tmp_path):
    from medseg_gui.core.events import JsonlWriter

    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"LogMessage","level":"info","message":"a","time":1}\n{"type":"LogMe')
    with open_jsonl_append(path) as fh:
        JsonlWriter(fh)(LogMessage(level="info", message="b"))
    events = read_jsonl(path)
    assert [e.message for e in events] == ["a", "b"]
    path.write_bytes(path.read_bytes() + '{"type":"LogMessage","message":"\u00e9'.encode()[:-1])  # cut mid-character
    assert [e.message for e in read_jsonl(path)] == ["a", "b"]


def test_metrics_rows_never_duplicate_and_a_partial_row_is_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    csv = runs.MetricsCsv(path, ["bg", "fg"])
    for epoch, loss in ((1, 0.9), (2, 0.8), (1, 0.7), (2, 0.6), (3, 0.5)):  # an older run's rows, then a redo
        csv.append({"epoch": epoch, "step": epoch * 4, "train_loss": loss})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("1")  # epoch 12's row, cut after its first digit
    assert [r["epoch"] for r in runs.read_metrics(path)] == [1, 2, 1, 2, 3]
    csv.truncate_after(2)
    rows = runs.read_metrics(path)
    assert [(r["epoch"], r["train_loss"]) for r in rows] == [(1, 0.7), (2, 0.6)]
    assert path.read_text().endswith("\n")


# ---- a full disk, a folder that cannot be written, a failed start ----------------------------------------
@pytest.mark.slow
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch):
    import torch

    config = tiny_config(tmp_path, epochs=3, batch_size=4)
    real_save = torch.save
    saves = []

    def full_disk(obj, f, *args, **kwargs):
        saves.append(getattr(f, "name", f))
        if isinstance(obj, dict) and obj.get("epochs_completed") == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    session, events = _session(config)
    result = session.run()
    assert isinstance(result, RunFailed) and result.kind == "disk", getattr(result, "detail", result)
    run = session.run_dir
    assert result.reason.startswith("disk full while writing ") and "\n" not in result.reason
    assert str(run / runs.CHECKPOINT_DIR) in result.reason and result.reason.endswith(".ckpt")
    assert "resume" in result.hint
    assert runs.load_checkpoint(runs.checkpoint_paths(run)[1])["epochs_completed"] == 1
    assert runs.checkpoint_paths(run)[0].is_file()
    assert not _temps(run) and events[-1] is result
    assert runs.list_runs(tmp_path / "runs")[0].status == "failed"


def test_disk_full_in_an_atomic_write_names_the_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "config.toml"
    target.write_text("before")

    def write(tmp):
        with open("/dev/full", "wb") as fh:  # a real ENOSPC from the kernel
            fh.write(b"x" * 65536)
            fh.flush()

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    with pytest.raises(OSError) as info:
        atomic.atomic_write(target, write)
    assert atomic.is_disk_full(info.value) and atomic.disk_error_path(info.value) == str(target)
    assert target.read_text() == "before" and not _temps(tmp_path)


def test_disk_full_while_appending_an_event_fails_the_run_and_still_tells_the_front_end(tmp_path, monkeypatch):
    class FullFile:
        """An events file on a full disk: every write fails the way the kernel says it."""
        name = str(tmp_path / "events.jsonl")

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr("medseg_gui.core.engine.session.open_jsonl_append", lambda path: FullFile())
    session, seen = _session(_light_config(tmp_path))
    session._notes.append("a note, the first line for the events file")
    result = session.run()
    assert isinstance(result, RunFailed) and result.kind == "disk"
    assert result.reason == f"disk full while writing {FullFile.name}"
    assert isinstance(seen[0], LogMessage) and seen[-1] is result  # the front end got both


def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    from medseg_gui.core.engine import session as session_mod
    config = _light_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    session, _ = _session(config, run_dir=blocker / "run")  # a parent that is a file
    result = session.run()
    assert isinstance(result, RunFailed) and result.kind == "run_dir"
    assert result.reason.startswith(f"cannot write the run folder {blocker / 'run'}") and "\n" not in result.reason

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "runs"))

    monkeypatch.setattr(session_mod.runs, "create_run_dir", read_only)
    session, _ = _session(config)
    result = session.run()
    assert result.kind == "run_dir" and "Read-only file system" in result.reason and not result.detail


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_in_one_line(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    out = tmp_path / "runs"
    out.mkdir()
    out.chmod(0o555)
    try:
        session, _ = _session(config)
        result = session.run()
    finally:
        out.chmod(0o755)
    assert isinstance(result, RunFailed) and result.kind == "run_dir" and str(out) in result.reason


@pytest.mark.parametrize("where", ["auto", "new", "existing-empty"])
def test_a_failed_start_leaves_no_run_folder_of_ours(tmp_path, where):
    config = tiny_config(tmp_path, epochs=1)

    def broken_data(config):
        raise FileNotFoundError("dataset folder /nowhere does not exist")

    run_dir = None if where == "auto" else tmp_path / "explicit"
    if where == "existing-empty":
        run_dir.mkdir()
    session, events = _session(config, run_dir=run_dir, dm=broken_data)
    result = session.run()
    assert isinstance(result, RunFailed) and result.run_dir == "" and "/nowhere" in result.reason
    assert events[-1] is result
    if where == "auto":
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    elif where == "new":
        assert not run_dir.exists()
    else:
        assert run_dir.is_dir() and not any(run_dir.iterdir())  # the user's folder stays, emptied of ours


# ---- files follow the umask ------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask_and_keep_an_existing_files_mode(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert atomic.current_umask() == mask
        path = atomic.atomic_write_text(tmp_path / "a.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask
        folder = atomic.temp_dir_beside(tmp_path / "bundle")
        assert folder.stat().st_mode & 0o777 == 0o777 & ~mask and atomic.is_our_temp_name(folder.name)
        private = tmp_path / "private.toml"
        private.write_text("secret")
        private.chmod(0o600)
        atomic.atomic_write_text(private, "still secret")
        assert private.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_stale_temp_sweep_removes_only_our_pattern(tmp_path):
    ours = [tmp_path / ".last.ckpt.k3j_9x0a.tmp", tmp_path / ".bundle.ab12cd34.tmp"]
    ours[0].write_bytes(b"x")
    ours[1].mkdir()
    (ours[1] / "model.safetensors").write_bytes(b"x")
    theirs = [tmp_path / "notes.tmp", tmp_path / ".hidden.tmp", tmp_path / "last.ckpt", tmp_path / ".x.TOOLONG12.tmp"]
    for p in theirs:
        p.write_text("keep")
    assert sorted(atomic.remove_stale_temps(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs) and not any(p.exists() for p in ours)


# ---- refused pickles -------------------------------------------------------------------------------------
class _Evil:
    """Stands for any pickled object; unpickling it could run arbitrary code."""


def test_a_pickled_checkpoint_is_refused_in_our_words(tmp_path):
    import torch

    ckpt = tmp_path / "evil.ckpt"
    torch.save({"format": 1, "model": {}, "payload": _Evil()}, ckpt)
    with pytest.raises(runs.CheckpointError) as info:
        runs.load_checkpoint(ckpt)
    text = str(info.value)
    assert text.startswith(f"{ckpt} contains pickled Python objects that a safe load refuses")
    assert "\x1b" not in text and "weights_only" not in text and "\n" not in text
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(runs.CheckpointError, match="cannot be read") as info:
        runs.load_checkpoint(truncated)
    assert "\x1b" not in str(info.value)


# ---- a real kill -9 ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_minus_9_mid_training_then_resume_is_consistent(tmp_path, capsys):
    """A training process killed right after its first checkpoint (wherever epoch 2 then is) leaves
    its lock behind; the resume takes the lock over, says so, and ends with best score = best file
    = bundle and one metrics row per epoch."""
    import torch

    from medseg_gui.cli import main
    from medseg_gui.core.engine.bundle import load_bundle
    from medseg_gui.core.events import Checkpointed, from_json

    from engine_helpers import tiny_model_dir

    run = tmp_path / "run"
    args = ["train", "--demo", "--image-size", "64", "--batch-size", "4", "--workers", "0",
            "--max-steps-per-epoch", "3", "--precision", "32", "--accelerator", "cpu",
            "--pretrained", str(tiny_model_dir(tmp_path, num_classes=4)), "--run-dir", str(run)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "medseg_gui.cli", *args, "--epochs", "50", "--events-json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            event = from_json(line)
            if isinstance(event, Checkpointed) and event.epoch == 1:
                break
        else:
            pytest.fail("the training ended before its first checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == proc.pid  # kill -9 leaves the lock
    done = runs.load_checkpoint(runs.checkpoint_paths(run)[1])["epochs_completed"]
    assert done >= 1

    rc = main(["train", "--resume", str(run), "--epochs", str(done + 1)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"took over the lock of process {proc.pid}" in err
    final = read_jsonl(run / runs.EVENTS_FILE)[-1]
    assert isinstance(final, RunFinished) and final.epochs_done == done + 1
    best_path, _ = runs.checkpoint_paths(run)
    assert final.best_f1 == pytest.approx(runs.checkpoint_score(best_path)[1])
    model, _ = load_bundle(run / runs.BUNDLE_DIR)
    best_state = runs.load_checkpoint(best_path)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best_state.items())
    assert [r["epoch"] for r in runs.read_metrics(run / runs.METRICS_FILE)] == list(range(1, done + 2))
    assert not (run / LOCK_FILE).exists() and not _temps(run)


# ---- a Stop before training began leaves no empty run --------------------------------------------------
@pytest.mark.parametrize("when", ["before-run", "loading-model"])
@pytest.mark.parametrize("where", ["auto", "new", "existing-empty"])
def test_a_stop_before_the_first_step_leaves_no_empty_run(tmp_path, when, where):
    from medseg_gui.core.events import LogMessage, PhaseChanged, RunFinished

    config = tiny_config(tmp_path, epochs=1)
    run_dir = None if where == "auto" else tmp_path / "explicit"
    if where == "existing-empty":
        run_dir.mkdir()
    session, events = _session(config, run_dir=run_dir)
    if when == "before-run":
        session.stop()
    else:  # the user's Stop while the model loads
        inner = session.user_sink

        def sink(event):
            inner(event)
            if isinstance(event, PhaseChanged) and event.phase == "loading_model":
                session.stop()
        session.user_sink = sink
    result = session.run()
    assert isinstance(result, RunFinished) and result.stopped_early and result.run_dir == ""
    assert not result.bundle_dir and result.steps_done == 0
    notes = [e.message for e in events if isinstance(e, LogMessage)]
    assert any("stopped before training began" in n for n in notes)
    assert runs.list_runs(tmp_path / "runs") == []
    if where == "auto":
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    elif where == "new":
        assert not run_dir.exists()
    else:
        assert run_dir.is_dir() and not any(run_dir.iterdir())  # the user's folder stays, emptied of ours


def test_a_stop_after_the_first_step_keeps_the_run(tmp_path):
    from medseg_gui.core.events import RunFinished, StepMetrics

    config = tiny_config(tmp_path, epochs=1)
    session, events = _session(config)
    inner = session.user_sink

    def sink(event):
        inner(event)
        if isinstance(event, StepMetrics):
            session.stop()
    session.user_sink = sink
    result = session.run()
    assert isinstance(result, RunFinished) and result.stopped_early and result.steps_done >= 1
    run = Path(result.run_dir)
    assert runs.is_run_dir(run) and runs.checkpoint_paths(run)[1].is_file()  # last.ckpt: resumable
    (summary,) = runs.list_runs(tmp_path / "runs")
    assert summary.status == "stopped" and summary.can_resume
