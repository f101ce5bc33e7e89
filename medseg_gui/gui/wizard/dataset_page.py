"""Wizard step 1: the dataset — the built-in demo, a folder the loader reads as is, or one to import."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QRadioButton, QVBoxLayout, QWidget, QWizardPage)

from medseg_gui.core.words import plural
from medseg_gui.gui import style
from medseg_gui.gui.wizard.sources import KIND_LABELS, SourceInfo, default_import_destination, detect_source, run_import
from medseg_gui.gui.wizard.tasks import start_task


def _label(text: str = "", role: str | None = None) -> QLabel:
    widget = QLabel(text)
    widget.setWordWrap(True)
    if role:
        widget.setProperty("role", role)
    return widget


class DatasetPage(QWizardPage):
    """Chooses ``dataset_path()``: "demo", a ready folder, or the destination of a finished import."""

    import_finished = Signal(object)  # the importer's ImportSummary

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTitle("Choose a dataset")
        self.setSubTitle("Images with masks of class ids. Start with the built-in demo to see the whole flow "
                         "in a few minutes, or use your own data.")
        self.source: SourceInfo | None = None
        self.imported_path: str | None = None  # destination of a finished import of the chosen source
        self._import_ticket = 0
        self.choose_dir = lambda caption, start: QFileDialog.getExistingDirectory(self, caption, start)

        layout = QVBoxLayout(self)
        self.demo_radio = QRadioButton("Built-in demo dataset — synthetic abdominal slices, 4 classes "
                                       "(background, stomach, small bowel, large bowel); made on first use")
        self.folder_radio = QRadioButton("A dataset folder on this computer")
        group = QButtonGroup(self)
        group.addButton(self.demo_radio)
        group.addButton(self.folder_radio)
        self.demo_radio.setChecked(True)
        layout.addWidget(self.demo_radio)
        layout.addWidget(self.folder_radio)

        row = QHBoxLayout()
        row.setContentsMargins(24, 0, 0, 0)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("train/ + valid/ folders, images/ + masks/, a Kaggle folder, "
                                            "DICOM or NIfTI volumes")
        self.browse_button = QPushButton("Browse…")
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse_button)
        layout.addLayout(row)
        self.formats = _label("Read as is: <b>train/{images,masks}</b> (+ valid/), or flat "
                              "<b>images/</b> + <b>masks/</b> (split by case). Converted into a new folder "
                              "first: the Kaggle <b>train.csv</b> layout, <b>DICOM</b> series with SEG objects, "
                              "<b>NIfTI</b> image/label pairs. Your folder is never modified.", "muted")
        self.formats.setContentsMargins(24, 0, 0, 0)
        layout.addWidget(self.formats)
        self.detected = _label()
        self.detected.setProperty("role", "banner")
        self.detected.setContentsMargins(24, 0, 0, 0)
        layout.addWidget(self.detected)

        self.import_box = QWidget()
        ib = QVBoxLayout(self.import_box)
        ib.setContentsMargins(24, 0, 0, 0)
        ib.addWidget(_label("Convert it into this new folder (the source is only read):"))
        dest_row = QHBoxLayout()
        self.dest_edit = QLineEdit()
        self.import_button = QPushButton("Import")
        self.import_button.setProperty("primary", True)
        dest_row.addWidget(self.dest_edit, 1)
        dest_row.addWidget(self.import_button)
        ib.addLayout(dest_row)
        self.import_progress = QProgressBar()
        self.import_progress.setVisible(False)
        ib.addWidget(self.import_progress)
        self.import_result = _label("", "muted")
        ib.addWidget(self.import_result)
        layout.addWidget(self.import_box)
        layout.addStretch(1)
        self.dont_show = QCheckBox("Don't open this wizard when medseg-gui starts (it stays in File → New "
                                   "training wizard…)")
        layout.addWidget(self.dont_show)

        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(300)
        self._detect_timer.timeout.connect(self._detect)
        self.demo_radio.toggled.connect(self._mode_changed)
        self.folder_edit.textChanged.connect(lambda _t: (self.folder_radio.setChecked(True), self._detect_timer.start()))
        self.browse_button.clicked.connect(self._browse)
        self.import_button.clicked.connect(self.start_import)
        self._mode_changed()

    # ----- state ---------------------------------------------------------------------------------
    def use_demo(self) -> bool:
        return self.demo_radio.isChecked()

    def dataset_path(self) -> str:
        if self.use_demo():
            return "demo"
        if self.source is not None and self.source.needs_import:
            return self.imported_path or ""
        return str(self.source.path) if self.source is not None and self.source.ready else ""

    def set_folder(self, path: str) -> None:
        """Choose a folder (as Browse would) and classify it now."""
        self.folder_radio.setChecked(True)
        self.folder_edit.setText(path)
        self._detect_timer.stop()
        self._detect()

    def isComplete(self) -> bool:  # noqa: N802 (Qt naming)
        return bool(self.dataset_path())

    # ----- widgets -------------------------------------------------------------------------------
    def _mode_changed(self, *_args) -> None:
        folder = not self.use_demo()
        for widget in (self.folder_edit, self.browse_button, self.formats):
            widget.setEnabled(folder)
        if folder:
            self._detect()
        else:
            self.detected.setVisible(False)
            self.import_box.setVisible(False)
        self.completeChanged.emit()

    def _browse(self) -> None:
        path = self.choose_dir("Choose a dataset folder", self.folder_edit.text() or str(Path.home()))
        if path:
            self.set_folder(path)

    def _detect(self) -> None:
        info = detect_source(self.folder_edit.text())
        if self.source is None or info.path != self.source.path or info.kind != self.source.kind:
            self.imported_path = None
            self.import_result.setText("")
            self._import_ticket = 0  # an import of the previous folder no longer counts
            self.import_progress.setVisible(False)
            self.import_button.setEnabled(True)
            if info.needs_import:
                self.dest_edit.setText(str(default_import_destination(info.path, info.kind or "import")))
        self.source = info
        empty = not self.folder_edit.text().strip()
        self.detected.setVisible(not self.use_demo() and not empty)
        self.detected.setText(info.message)
        self.detected.setProperty("state", "ok" if info.kind else "bad")
        self.detected.style().unpolish(self.detected)
        self.detected.style().polish(self.detected)
        self.import_box.setVisible(not self.use_demo() and info.needs_import)
        self.completeChanged.emit()

    # ----- import --------------------------------------------------------------------------------
    def start_import(self) -> None:
        info = self.source
        if info is None or not info.needs_import:
            return
        destination = Path(self.dest_edit.text().strip()).expanduser()
        self.import_button.setEnabled(False)
        self.import_progress.setRange(0, 0)
        self.import_progress.setVisible(True)
        self.import_result.setText(f"Converting the {KIND_LABELS[info.kind or '']}…")
        kind, source = info.kind or "", info.path
        self._import_ticket, _task = start_task(
            self, lambda progress, _stop: run_import(kind, source, destination, progress),
            self._import_done, self._import_failed, name="wizard-import", on_progress=self._import_progress)

    def _import_progress(self, done: int, total: int) -> None:
        self.import_progress.setRange(0, max(1, total))
        self.import_progress.setValue(done)

    def _import_done(self, ticket: int, summary) -> None:
        if ticket != self._import_ticket:
            return
        self.import_progress.setVisible(False)
        self.import_button.setEnabled(True)
        self.imported_path = summary.destination
        lines = summary.lines()
        self.import_result.setText("<br>".join(lines[:4]) + (f"<br>{plural(len(summary.skipped), 'item')} skipped, see "
                                                             "import_report.json there" if summary.skipped else ""))
        self.import_result.setProperty("role", "")
        self.import_finished.emit(summary)
        self.completeChanged.emit()

    def _import_failed(self, ticket: int, message: str) -> None:
        if ticket != self._import_ticket:
            return
        self.import_progress.setVisible(False)
        self.import_button.setEnabled(True)
        self.import_result.setText(f"<span style='color:{style.ERROR}'>Import failed: {html.escape(message)}</span>")
        self.completeChanged.emit()
