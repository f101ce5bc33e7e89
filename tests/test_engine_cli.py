"""`medseg train` on the real data layer: progress output, JSON-lines events, DDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medseg_gui.cli import main
from medseg_gui.core import runs
from medseg_gui.core.events import from_json

from engine_helpers import tiny_model_dir

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _args(tmp_path, *extra):
    return ["train", "--demo", "--image-size", "64", "--batch-size", "4", "--workers", "0",
            "--max-steps-per-epoch", "3", "--precision", "32", "--accelerator", "cpu",
            "--pretrained", str(tiny_model_dir(tmp_path, num_classes=4)), "--output", str(tmp_path / "runs"),
            *extra]


def test_train_demo_prints_progress_and_writes_a_run(tmp_path, capsys):
    rc = main(_args(tmp_path, "--epochs", "1"))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "epoch 1/1:" in err and "finished: 1 epoch, 3 steps" in err
    (summary,) = runs.list_runs(tmp_path / "runs")
    assert summary.status == "finished" and summary.has_bundle and summary.dataset == "demo"
    assert runs.load_run(summary.run_dir).config.dataset.image_size == 64


def test_bad_override_is_a_clear_error(tmp_path, capsys):
    assert main(_args(tmp_path, "--epochs", "0")) == 2
    assert "training.epochs" in capsys.readouterr().err


def _subprocess(tmp_path, *extra, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "medseg_gui.cli", *_args(tmp_path, *extra), "--events-json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin,
                            text=True)


def test_ddp_two_cpu_processes_one_run_folder_one_event_stream(tmp_path):
    proc = _subprocess(tmp_path, "--epochs", "2", "--devices", "2", "--strategy", "ddp")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    events = [from_json(line) for line in out.splitlines()]  # every stdout line is an event
    names = [type(e).__name__ for e in events]
    assert names.count("RunStarted") == 1 and names[-1] == "RunFinished"
    assert [e.epoch for e in events if type(e).__name__ == "EpochMetrics"] == [1, 2]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # rank 1 wrote nothing of its own
    run_dir = Path(events[-1].run_dir)
    assert len(runs.read_metrics(run_dir / "metrics.csv")) == 2
    assert json.loads((run_dir / "environment.json").read_text())["devices"] == 2
    assert (run_dir / "bundle" / "model.safetensors").is_file()


def test_stop_line_on_stdin_ends_the_child_cooperatively(tmp_path):
    proc = _subprocess(tmp_path, "--epochs", "50", "--stop-on-stdin", stdin=subprocess.PIPE)
    seen = []
    for line in proc.stdout:
        event = from_json(line)
        seen.append(event)
        if type(event).__name__ == "StepMetrics":
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            break
    out, err = proc.communicate(timeout=300)
    seen += [from_json(line) for line in out.splitlines()]
    assert proc.returncode == 0, err[-3000:]
    final = seen[-1]
    assert type(final).__name__ == "RunFinished" and final.stopped_early and final.epochs_done < 50
