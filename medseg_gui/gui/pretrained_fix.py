"""The fix beside the "Pretrained weights" pre-flight item: choose local weights, or download them now.

Offline, ``training.pretrained = 'auto'`` trains from random weights; the checklist says so, and this
row of buttons offers the ways out in place (wizard and Tools share the checklist, so both get it).
It only sets ``training.pretrained`` through the state (the same as typing a path in the form) and
asks the checklist to check again; the rules for what a usable file or folder is live in
``core.model``. The licence of NVIDIA's weights is said beside the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from medseg_gui.core.planning.weights import PRETRAINED_LICENCE, local_weights_problem, offline_by_environment
from medseg_gui.gui.state import AppState


class PretrainedChooser(QWidget):
    """Buttons: Choose weights file…, Choose model folder…, and Download now (only when not offline)."""

    def __init__(self, state: AppState, recheck: Callable[[], None] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.recheck = recheck
        self.job: Any = None
        # Replaced in tests; return "" when the user cancels.
        self.choose_file = lambda: QFileDialog.getOpenFileName(
            self, "Choose pretrained weights", str(Path.home()), "Weights (*.safetensors);;All files (*)")[0]
        self.choose_folder = lambda: QFileDialog.getExistingDirectory(
            self, "Choose a model folder (with config.json)", str(Path.home()))
        box = QVBoxLayout(self)
        box.setContentsMargins(24, 0, 0, 2)
        box.setSpacing(2)
        row = QHBoxLayout()
        row.setSpacing(6)
        self.file_button = QPushButton("Choose weights file…")
        self.file_button.setToolTip("A .safetensors state dict of this SegFormer variant (e.g. a model bundle's "
                                    "model.safetensors)")
        self.folder_button = QPushButton("Choose model folder…")
        self.folder_button.setToolTip("A Hugging Face model folder with config.json (save_pretrained output or "
                                      "a medseg model bundle)")
        self.download_button = QPushButton("Download now")
        self.download_button.setToolTip("Fetch the weights from the Hugging Face Hub into the local cache")
        self.download_button.setVisible(not offline_by_environment())
        for button in (self.file_button, self.folder_button, self.download_button):
            row.addWidget(button)
        row.addStretch(1)
        box.addLayout(row)
        self.note = QLabel(PRETRAINED_LICENCE)
        self.note.setProperty("role", "muted")
        self.note.setWordWrap(True)
        box.addWidget(self.note)
        self.file_button.clicked.connect(lambda: self.pick(self.choose_file()))
        self.folder_button.clicked.connect(lambda: self.pick(self.choose_folder()))
        self.download_button.clicked.connect(self.download)

    def pick(self, path: str) -> bool:
        """Use ``path`` as training.pretrained if it is usable; otherwise say why. True when set."""
        if not path:
            return False
        problem = local_weights_problem(Path(path))
        if problem:
            self.note.setText(f"Not used: {problem}. Choose a .safetensors file or a folder with config.json.")
            return False
        self.state.set_value("training.pretrained", str(Path(path).resolve()))
        self.note.setText(f"Training starts from {Path(path).resolve()}. {PRETRAINED_LICENCE}")
        if self.recheck is not None:
            self.recheck()
        return True

    def download(self) -> None:
        """Fetch the variant's hub weights in the background, then check again (never when offline)."""
        from medseg_gui.gui.workers import Task

        if offline_by_environment():
            return
        variant = self.state.config.training.variant

        def fetch(_progress, _stop):
            from medseg_gui.core.engine.model import download_pretrained

            return download_pretrained(variant)

        self.download_button.setEnabled(False)
        self.note.setText(f"Downloading SegFormer-{variant} weights… {PRETRAINED_LICENCE}")
        job = Task(fetch, "weights-download", self)
        job.succeeded.connect(lambda folder: self._downloaded(str(folder)))
        job.failed.connect(lambda message, _detail: self._failed(message))
        self.job = job
        job.start()

    def _downloaded(self, folder: str) -> None:
        self.download_button.setEnabled(True)
        self.note.setText(f"Downloaded to {folder}. {PRETRAINED_LICENCE}")
        if self.recheck is not None:
            self.recheck()

    def _failed(self, message: str) -> None:
        self.download_button.setEnabled(True)
        self.note.setText(f"Download failed: {message}. Choose a local file instead.")


def attach_pretrained_actions(rows: list[Any], state: AppState, recheck: Callable[[], None] | None = None) -> None:
    """Put a ``PretrainedChooser`` under the checklist's "pretrained" row when it is not green."""
    for row in rows:
        item = getattr(row, "item", None)
        if item is None or item.id != "pretrained" or item.status == "ok":
            continue
        row.chooser = PretrainedChooser(state, recheck, row)
        layout = row.layout()
        # CheckRow lays its mark and text in a row; the chooser goes under the text.
        text = getattr(row, "text", None)
        if text is not None and layout is not None:
            index = layout.indexOf(text)
            layout.removeWidget(text)
            column = QWidget(row)
            col = QVBoxLayout(column)
            col.setContentsMargins(0, 0, 0, 0)
            col.setSpacing(4)
            col.addWidget(text)
            col.addWidget(row.chooser)
            layout.insertWidget(index, column, 1)
