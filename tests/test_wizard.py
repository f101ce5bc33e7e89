"""The recommend-and-train wizard (pytest-qt, offscreen): end to end on the demo dataset with a tiny model,
Back and Cancel at every step (also during training), and the first-launch flag."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

from medseg_gui.core import config as cfg  # noqa: E402
from medseg_gui.core import events as ev  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402
from medseg_gui.gui.training.worker import InProcessWorker, TrainingRunner  # noqa: E402
from medseg_gui.gui import workers  # noqa: E402
from medseg_gui.gui.wizard.wizard import (PAGE_CONFIG, PAGE_DATASET, PAGE_RESULT, PAGE_TRAINING,  # noqa: E402
                                          PAGE_VALIDATION, STOP_BUTTON, TrainingWizard)
from tests.gui_fakes import cpu_snapshot  # noqa: E402
from tests.training_tab_helpers import tiny_model_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _no_leftover_tasks():
    yield
    assert workers.cancel_all(30_000), "a wizard background job did not end"


def tiny_training(root: Path):
    """The tests' tiny-model hook: b0 with tiny widths, 64 px, one epoch of two steps, on the CPU."""
    weights = str(tiny_model_dir(root))

    def edit(c: cfg.RunConfig) -> None:
        c.dataset.image_size = 64
        tr = c.training
        tr.variant, tr.pretrained, tr.epochs, tr.max_steps_per_epoch, tr.batch_size = "b0", weights, 1, 2, 2
        tr.lr, tr.num_workers, tr.precision, tr.accelerator, tr.compile = 3e-3, 0, "32", "cpu", "off"
        tr.output_dir = str(root / "runs")
    return edit


def start_config() -> cfg.RunConfig:
    config = cfg.RunConfig()
    config.dataset.image_size = 64  # the demo is generated at the configured size: keep it small
    return config


def make_wizard(qtbot, window=None, **kwargs) -> TrainingWizard:
    wizard = TrainingWizard(window, config=None if window is not None else start_config(), probe_fn=cpu_snapshot,
                            confirm=lambda _title, _question: True, **kwargs)
    if window is None:
        qtbot.addWidget(wizard)
    wizard.show()
    return wizard


def to_config_page(qtbot, wizard: TrainingWizard) -> None:
    assert wizard.currentId() == PAGE_DATASET and wizard.dataset_page.use_demo()
    wizard.next()
    assert wizard.currentId() == PAGE_VALIDATION
    qtbot.waitUntil(lambda: not wizard.validation_page.is_busy(), timeout=30_000)
    assert wizard.validation_page.isComplete(), wizard.validation_page.banner.text()
    wizard.next()
    assert wizard.currentId() == PAGE_CONFIG


@pytest.fixture
def quick_preflight(monkeypatch):
    """A checklist that passes at once (no torch import): for tests whose run is a fake session."""
    from medseg_gui.core.tools.preflight import CheckItem, PreflightReport
    from medseg_gui.gui.wizard import config_page

    monkeypatch.setattr(config_page, "run_preflight",
                        lambda _config, _snapshot, _report: PreflightReport([CheckItem("fake", "Fake", "ok", "")]))


def wait_preflight_ok(qtbot, wizard: TrainingWizard) -> None:
    page = wizard.config_page
    qtbot.waitUntil(lambda: page.preflight_current() and page.preflight_report is not None, timeout=30_000)
    assert page.preflight_report.ok, page.preflight_report.text()
    assert page.isComplete()


# ---- end to end ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_wizard_trains_on_the_demo_and_lands_in_the_viewer_with_a_prediction(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow

    window = MainWindow(AppState(start_config()), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    window.state.set_snapshot(cpu_snapshot())
    wizard = make_wizard(qtbot, window)
    to_config_page(qtbot, wizard)

    # Step 3 starts from the recommendation for this machine (no GPU: the CPU tier), shown and editable.
    rec = wizard.state.recommendation
    assert rec is not None and rec.tier.name == "cpu"
    assert wizard.state.config.training.variant == rec.config.training.variant
    assert wizard.config_page.card.tier.text() == rec.tier.label
    assert wizard.state.config.dataset.num_classes == 4  # read from the demo by the validation step
    wizard.state.edit_config(tiny_training(tmp_path))
    assert wizard.config_page.editor.rows["dataset.image_size"].editor.get() == 64  # the form follows the edit
    wait_preflight_ok(qtbot, wizard)

    wizard.next()
    assert wizard.currentId() == PAGE_TRAINING
    page = wizard.training_page
    assert page.is_running() and not page.isComplete()
    assert wizard.button(STOP_BUTTON).isVisible()  # Back is replaced by Stop while the run goes
    assert not wizard.button(QWizard.WizardButton.BackButton).isVisible()
    qtbot.waitUntil(lambda: page.result is not None, timeout=90_000)
    assert isinstance(page.result, ev.RunFinished), page.outcome.text()
    assert page.isComplete() and Path(page.bundle, "medseg.json").is_file()
    assert page.live.status == "finished" and len(page.live.loss) > 0  # the live view was fed
    assert not wizard.button(STOP_BUTTON).isVisible()

    wizard.next()
    assert wizard.currentId() == PAGE_RESULT
    viewer = wizard.result_page.viewer
    qtbot.waitUntil(lambda: viewer.doc.has_prediction(), timeout=30_000)
    example = wizard.result_page.example
    assert example is not None and "/valid/" in Path(example.image).as_posix()
    assert viewer.doc.labels is not None and viewer.doc.labels.shape == (1, 64, 64)
    assert viewer.doc.truth is not None  # the ground truth is loaded for comparison
    overlay = viewer.doc.prediction_overlay()
    assert overlay is not None and overlay.shape[:2] == (64, 64)

    # Finish hands over to the main window: its Viewer page shows the same model's prediction.
    wizard.accept()
    assert window.current_page() == "Viewer"
    qtbot.waitUntil(lambda: window.viewer.doc.has_prediction(), timeout=30_000)
    assert np.array_equal(window.viewer.doc.labels, viewer.doc.labels)
    assert window.state.config.training.pretrained == wizard.state.config.training.pretrained
    assert window.state.config_source == "wizard"


# ---- Back and Cancel ---------------------------------------------------------------------------------------------
def test_dataset_page_needs_a_readable_folder_and_back_returns_to_it(qtbot, tmp_path):
    wizard = make_wizard(qtbot)
    page = wizard.dataset_page
    assert page.isComplete()  # the demo is chosen by default
    page.set_folder(str(tmp_path))  # an empty folder: not a dataset
    assert not page.isComplete()
    assert "not a dataset layout" in page.detected.text()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()

    from PIL import Image

    bad = tmp_path / "bad"  # flat layout where no image has a mask: validation must refuse it
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32), 60 * i, np.uint8)).save(bad / "images" / f"case{i}_a.png")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad / "masks" / f"other{i}.png")
    page.set_folder(str(bad))
    assert page.isComplete() and page.source.kind == "flat"
    wizard.next()
    validation = wizard.validation_page
    qtbot.waitUntil(lambda: not validation.is_busy(), timeout=30_000)
    assert not validation.isComplete()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "cannot" in validation.banner.text().lower()
    wizard.back()
    assert wizard.currentId() == PAGE_DATASET
    page.demo_radio.setChecked(True)
    wizard.next()
    qtbot.waitUntil(lambda: not validation.is_busy(), timeout=30_000)
    assert validation.isComplete() and validation.check.path == "demo"


def test_validation_page_lists_bad_files(qtbot, tmp_path):
    from medseg_gui.core.data.demo import generate_demo

    data = generate_demo(tmp_path / "data", n=16, size=64)
    (data / "train" / "images" / "stray.png").write_bytes(b"not a png")  # unreadable, without a mask
    wizard = make_wizard(qtbot)
    wizard.dataset_page.set_folder(str(data))
    wizard.next()
    page = wizard.validation_page
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=30_000)
    assert page.isComplete()  # the bad file is skipped, training can go ahead
    files = [page.problems.item(r, 0).text() for r in range(page.problems.rowCount())]
    assert any("stray.png" in f for f in files)
    assert "bad file" in page.problems_title.text()


def test_back_from_config_and_cancel_leave_the_main_state_alone(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow

    window = MainWindow(AppState(start_config()), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    before = window.state.config.to_dict()
    wizard = make_wizard(qtbot, window)
    to_config_page(qtbot, wizard)
    wizard.state.set_value("training.epochs", 3)
    wizard.back()
    assert wizard.currentId() == PAGE_VALIDATION
    assert wizard.validation_page.isComplete()  # Back keeps the dataset check's result
    wizard.next()  # back on the configuration: the checklist runs again, the user's edit survives
    assert wizard.currentId() == PAGE_CONFIG
    assert wizard.state.config.training.epochs == 3
    with qtbot.waitSignal(wizard.rejected, timeout=30_000):
        wizard.reject()  # no run was started, so Cancel closes at once
    assert not wizard.training_page.is_running()
    assert window.state.config.to_dict() == before


def test_next_on_the_config_page_waits_for_the_checklist(qtbot, monkeypatch):
    """QWizard.next() ignores the disabled Next button: the page itself must refuse an unchecked config."""
    from medseg_gui.gui.wizard import config_page

    release = threading.Event()

    def held_preflight(_config, _snapshot, _report):
        release.wait(60)
        raise RuntimeError("the checklist could not run")

    monkeypatch.setattr(config_page, "run_preflight", held_preflight)
    wizard = make_wizard(qtbot, runner_factory=fake_runner)
    page = wizard.config_page
    try:
        to_config_page(qtbot, wizard)
        assert page.checklist.is_checking() and not page.isComplete()
        wizard.next()
        assert wizard.currentId() == PAGE_CONFIG and not wizard.training_page.is_running()
    finally:
        release.set()
        qtbot.waitUntil(lambda: not page.checklist.is_checking(), timeout=30_000)
        if wizard.training_page.is_running():
            wizard.training_page.stop()
            qtbot.waitUntil(lambda: not wizard.training_page.is_running(), timeout=30_000)


class EndlessSession:
    """A stand-in for the training session that runs until stopped (transport and UI without torch)."""

    def __init__(self, config, sink, run_dir=None, resume_from=None, **_):
        self.sink, self.config = sink, config
        self._stop = threading.Event()

    def stop(self):
        self._stop.set()

    def run(self):
        self.sink(ev.RunStarted(run_dir="", config=self.config.to_dict(), device="cpu", epochs=1, steps_per_epoch=10**6))
        step = 0
        while not self._stop.is_set():
            step += 1
            self.sink(ev.StepMetrics(step=step, epoch=1, loss=1.0 / step, lr=1e-3, epoch_progress=step / 10**6))
            time.sleep(0.005)
        result = ev.RunFinished(run_dir="", stopped_early=True, steps_done=step)
        self.sink(result)
        return result


def fake_runner(plan: bool) -> TrainingRunner:
    factory = partial(InProcessWorker, session_factory=lambda c, sink, **kw: EndlessSession(c, sink, **kw),
                      check_data=False)
    return TrainingRunner(in_process_factory=factory)


def test_cancel_during_training_stops_the_run_before_closing(qtbot, tmp_path, quick_preflight):
    wizard = make_wizard(qtbot, runner_factory=fake_runner)
    to_config_page(qtbot, wizard)
    wizard.state.edit_config(lambda c: setattr(c.training, "output_dir", str(tmp_path / "runs")))
    wizard.config_page.start_preflight()  # the edit's debounced re-check, now
    qtbot.waitUntil(wizard.config_page.isComplete, timeout=30_000)
    wizard.next()
    page = wizard.training_page
    assert page.is_running()
    qtbot.waitUntil(lambda: page.live.step > 5, timeout=30_000)
    assert wizard.button(STOP_BUTTON).isVisible()
    assert not wizard.button(QWizard.WizardButton.BackButton).isVisible()

    wizard.reject()  # Cancel: asks (auto-yes here), stops cooperatively, closes when the run has ended
    assert wizard.isVisible() or not page.is_running()
    qtbot.waitUntil(lambda: not wizard.isVisible(), timeout=30_000)
    assert not page.is_running()
    assert isinstance(page.result, ev.RunFinished) and page.result.stopped_early
    assert wizard.result() == QWizard.DialogCode.Rejected


def test_stop_button_then_back_and_train_again(qtbot, tmp_path, quick_preflight):
    wizard = make_wizard(qtbot, runner_factory=fake_runner)
    to_config_page(qtbot, wizard)
    qtbot.waitUntil(wizard.config_page.isComplete, timeout=30_000)
    wizard.next()
    page = wizard.training_page
    assert page.is_running()
    qtbot.waitUntil(lambda: page.live.step > 3, timeout=30_000)
    wizard.button(STOP_BUTTON).click()
    qtbot.waitUntil(lambda: page.result is not None, timeout=30_000)
    assert not page.isComplete()  # no model was saved by the fake run: Next stays off
    assert "before a model was saved" in page.outcome.text()
    assert wizard.button(QWizard.WizardButton.BackButton).isVisible()
    wizard.back()
    assert wizard.currentId() == PAGE_CONFIG
    qtbot.waitUntil(wizard.config_page.isComplete, timeout=30_000)
    wizard.next()  # a second run starts with a fresh live view
    assert page.is_running() and page.live.step == 0
    page.stop()
    qtbot.waitUntil(lambda: not page.is_running(), timeout=30_000)


def test_cancel_while_the_dataset_is_being_checked(qtbot):
    wizard = make_wizard(qtbot)
    wizard.next()
    wizard.reject()  # the check cannot be interrupted; the job outlives the wizard safely
    assert not wizard.isVisible()


# ---- first launch and the menu -------------------------------------------------------------------------------------
def test_first_launch_flag_dont_show_again_and_menu(qtbot):
    from medseg_gui.gui import wizard as wizard_pkg
    from medseg_gui.gui.app import parse_args
    from medseg_gui.gui.main_window import MainWindow

    assert parse_args(["--no-wizard"]).no_wizard and not parse_args([]).no_wizard
    window = MainWindow(AppState(start_config()), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    window.state.set_snapshot(cpu_snapshot())
    assert wizard_pkg.show_on_start()  # a fresh MEDSEG_HOME: first launch
    first = wizard_pkg.maybe_open_on_first_launch(window)
    assert first is not None and first.isVisible()
    first.reject()  # cancelled without ticking the box: it comes back next launch
    assert wizard_pkg.show_on_start()

    second = wizard_pkg.maybe_open_on_first_launch(window)
    assert second is not None and second is not first
    second.dataset_page.dont_show.setChecked(True)
    second.reject()
    assert not wizard_pkg.show_on_start()
    assert wizard_pkg.maybe_open_on_first_launch(window) is None

    action = window.wizard_action  # File → New training wizard… still opens it, with its shortcut
    assert action.shortcut().toString() == "Ctrl+N"
    assert action in window.menuBar().actions()[0].menu().actions()
    action.trigger()
    assert window.wizard is not None and window.wizard.isVisible()
    window.wizard.reject()


# ---- what the folder holds, said before Import is offered --------------------------------------------------------
def test_detection_says_what_was_found_and_what_is_missing(tmp_path):
    import nibabel as nib

    from dicom_fixtures import make_ct_series, make_seg
    from medseg_gui.gui.wizard.sources import detect_source

    slices = [np.full((16, 16), v, np.int16) for v in (0, 50, 100)]
    series = tmp_path / "dicom"
    make_ct_series(series / "ct", slices, [0.0, 2.0, 4.0], "1.2.826.0.1.3680043.9.7777.1")
    info = detect_source(series)
    assert info.kind is None and not info.needs_import  # no SEG: Import is not offered
    assert "1 DICOM image series" in info.message and "(3 images)" in info.message
    assert "no segmentation" in info.message and "1.2.826" not in info.message  # words, not UIDs
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 1
    make_seg(series / "seg.dcm", [(1, 2.0, mask)], ["Liver"], series_uid="1.2.826.0.1.3680043.9.7777.1")
    info = detect_source(series)
    assert info.kind == "dicom" and info.needs_import
    assert "1 DICOM series with a segmentation" in info.message and "(3 images)" in info.message

    volumes = tmp_path / "nifti"
    volumes.mkdir()
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), affine), str(volumes / "scan.nii.gz"))
    info = detect_source(volumes)
    assert info.kind is None and "no image/label pairs" in info.message and "scan.nii.gz" in info.message
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), affine), str(volumes / "scan_seg.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), affine), str(volumes / "other.nii.gz"))
    info = detect_source(volumes)
    assert info.kind == "nifti" and "1 NIfTI image/label pair (scan)" in info.message
    assert "other.nii.gz" in info.message and "left out" in info.message


def test_wizard_shows_its_step_and_fits_the_screen(qtbot):
    from medseg_gui.gui.main_window import MainWindow

    window = MainWindow(AppState(start_config()), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    window.state.set_snapshot(cpu_snapshot())
    opened = window.open_wizard()
    assert opened.isVisible() and not opened.isModal()  # the main window stays usable during a long run
    assert opened.windowModality() == Qt.WindowModality.NonModal
    opened.reject()
    wizard = make_wizard(qtbot)
    assert wizard.currentPage().title().startswith("Step 1 of 5")
    assert wizard.page(PAGE_RESULT).title().startswith("Step 5 of 5")
    area = wizard.screen().availableGeometry()
    assert wizard.height() <= area.height()
    wizard.reject()
