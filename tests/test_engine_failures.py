"""One classification of failures for the session, the CLI and the GUI worker (core.engine.failures)."""

from __future__ import annotations

import errno
import subprocess
import sys

from medseg_gui.core import config as cfg
from medseg_gui.core.engine.failures import HINTS, check_dataset, classify_failure, hint_for, is_oom
from medseg_gui.core.events import RunFailed


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_each_kind_has_its_reason_and_hint():
    disk = classify_failure(raised(OSError(errno.ENOSPC, "No space left on device", "/runs/r1/last.ckpt")), "/runs/r1")
    assert disk.kind == "disk" and "/runs/r1/last.ckpt" in disk.reason and disk.hint == HINTS["disk"]

    class OutOfMemoryError(RuntimeError):  # torch's name, without importing torch
        pass

    assert classify_failure(raised(OutOfMemoryError("CUDA out of memory")), "").kind == "oom"
    assert classify_failure(raised(RuntimeError("CUDA error: out of memory")), "").kind == "oom"
    assert classify_failure(raised(MemoryError()), "").kind == "oom"

    class DatasetError(Exception):
        pass

    data = classify_failure(raised(DatasetError("mask 3.png is empty")), "r")
    assert data.kind == "data" and "mask 3.png" in data.reason and data.run_dir == "r"
    config = classify_failure(raised(cfg.ConfigError([cfg.ConfigProblem("training.epochs", "must be ≥ 1")])))
    assert config.kind == "config" and "training.epochs" in config.reason and config.hint == HINTS["config"]
    other = classify_failure(raised(KeyError("x")))
    assert other.kind == "error" and other.reason.startswith("KeyError") and "Traceback" in other.detail


def test_gpu_oom_is_told_apart_from_host_memory():
    """The session's OOM recovery halves the batch only for a GPU OOM, not for host memory."""
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_oom(MemoryError()) and not is_oom(RuntimeError("shape mismatch"))


def test_hint_for_prefers_the_failure_s_own_hint():
    assert hint_for(RunFailed(run_dir="", reason="r", kind="oom", hint="use b0")) == "use b0"
    assert hint_for(RunFailed(run_dir="", reason="r", kind="oom")) == HINTS["oom"]
    assert hint_for(RunFailed(run_dir="", reason="r", kind="unheard-of")) == HINTS["error"]


def test_a_missing_dataset_stops_the_start(tmp_path):
    config = cfg.RunConfig()
    config.dataset.path = str(tmp_path / "no-such-dataset")
    report, failure = check_dataset(config)
    assert report is None and failure.kind == "data" and "no-such-dataset" in failure.reason
    assert failure.hint == HINTS["data"]


def test_classifying_needs_no_torch():
    """The GUI classifies failures before torch is loaded: importing the module must not load it."""
    code = "import sys, medseg_gui.core.engine.failures; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
