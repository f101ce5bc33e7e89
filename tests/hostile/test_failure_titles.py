"""Failures are shown under a heading that names them: a full disk or a run folder another training holds
is not a generic "Training failed". One table in core (events.failure_title) serves the GUI and the CLI."""

from __future__ import annotations

from functools import partial

import pytest

from medseg_gui.core import config as cfg
from medseg_gui.core import events as ev
@pytest.mark.parametrize("kind, title", [
    ("disk", "Disk full"), ("run_busy", "Run folder in use"), ("run_dir", "Run folder refused"),
    ("oom", "Out of GPU memory"), ("data", "Dataset problem"), ("config", "Configuration problem"),
    ("error", "Training failed"), ("from a newer version", "Training failed"),
])
def test_failure_title_by_kind(kind, title):
    assert ev.failure_title(kind) == title


def test_failure_line_heads_the_reason_with_its_title_once():
    busy = ev.RunFailed(run_dir="r", reason="the run folder r is locked by process 7", kind="run_busy")
    assert ev.failure_line(busy) == "Run folder in use: the run folder r is locked by process 7"
    full = ev.RunFailed(run_dir="r", reason="disk full while writing r/last.ckpt", kind="disk")
    assert ev.failure_line(full) == "disk full while writing r/last.ckpt"  # not "Disk full: disk full …"


def test_cli_progress_printer_prints_the_titled_line():
    import io

    from medseg_gui.cli.train_cmd import ProgressPrinter

    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    printer(ev.RunFailed(run_dir="r", reason="r is an existing training run", kind="run_dir", hint="resume it"))
    assert stream.getvalue() == "error: Run folder refused: r is an existing training run\nhint: resume it\n"


class _FailingSession:
    """Starts, then fails with the given kind, as TrainingSession reports a full disk or a busy folder."""

    def __init__(self, config, sink, *args, kind="disk", **kwargs):
        self.sink, self.config, self.kind = sink, config, kind

    def stop(self):
        pass

    def run(self):
        self.sink(ev.RunStarted(run_dir="", config=self.config.to_dict(), device="cpu", epochs=1,
                                steps_per_epoch=1, predicted_peak_gb=1.0, vram_total_gb=8.0))
        result = ev.RunFailed(run_dir="", reason=f"a {self.kind} failure", kind=self.kind, hint="do this")
        self.sink(result)
        return result


@pytest.mark.parametrize("kind, title", [("disk", "Disk full"), ("run_busy", "Run folder in use"),
                                         ("run_dir", "Run folder refused")])
def test_training_page_titles_disk_and_run_folder_failures(qtbot, tmp_path, kind, title):
    pytest.importorskip("pytestqt")
    from medseg_gui.gui.state import AppState
    from medseg_gui.gui.training.tab import TrainingTab
    from medseg_gui.gui.training.worker import InProcessWorker, TrainingRunner

    calls = []
    config = cfg.RunConfig()
    config.training.output_dir = str(tmp_path / "runs")
    factory = partial(InProcessWorker, session_factory=lambda c, sink, **kw: _FailingSession(c, sink, kind=kind),
                      check_data=False)
    tab = TrainingTab(AppState(config), TrainingRunner(in_process_factory=factory),
                      error_presenter=lambda *args: calls.append(args))
    qtbot.addWidget(tab)
    tab.show()
    assert tab.start()
    qtbot.waitUntil(lambda: bool(calls), timeout=30_000)
    heading, reason, hint, _ = calls[0]
    assert heading == title and reason == f"a {kind} failure" and hint == "do this"
