"""Wizard step 5: the trained model's masks on a validation image, in the Viewer.

``show_prediction`` drives any ``ViewerWidget`` — the one embedded in this page and the main window's
Viewer page on Finish: open the image, load the model in the viewer's worker, then load the ground
truth and run the model on the slice.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget, QWizardPage

from medseg_gui.core import config as cfg
from medseg_gui.core.headline import HEADLINE_METRIC
from medseg_gui.gui.viewer import ViewerWidget

SAMPLE_CANDIDATES = 12  # validation masks looked at when choosing the example


@dataclass
class Example:
    image: str
    mask: str | None


def pick_validation_example(config: cfg.RunConfig) -> Example | None:
    """A validation pair whose mask shows the most foreground among the first few (a telling example)."""
    from PIL import Image

    from medseg_gui.core.data.formats import index_dataset, resolve_dataset_path

    ds = config.dataset
    try:
        index = index_dataset(resolve_dataset_path(ds.path, ds.image_size), ds.val_fraction, config.training.seed)
    except (OSError, ValueError):
        return None
    pairs = index.valid or index.train
    if not pairs:
        return None

    def foreground(pair) -> float:
        try:
            with Image.open(pair.mask) as mask:
                return float(np.count_nonzero(np.asarray(mask)))
        except OSError:
            return -1.0

    best = max(pairs[:SAMPLE_CANDIDATES], key=foreground)
    return Example(str(best.image), str(best.mask))


def show_prediction(viewer: ViewerWidget, bundle: str, example: Example | None) -> None:
    """Open ``example`` in ``viewer``, load ``bundle``, then overlay its prediction (asynchronously)."""
    if example is not None:
        viewer.open_path(example.image)

    def loaded(_predictor) -> None:
        viewer.model_loaded.disconnect(loaded)
        if example is None or not viewer.doc.is_open:
            return
        if example.mask:
            viewer.load_truth(example.mask)
        viewer.run_slice()

    viewer.model_loaded.connect(loaded)
    viewer.load_model(bundle)


class ResultPage(QWizardPage):
    def __init__(self, training_page, state, parent: QWidget | None = None):
        super().__init__(parent)
        self.training_page = training_page
        self.state = state
        self.example: Example | None = None
        self.setTitle("Result")
        self.setSubTitle("The best model of the run, on an image it did not train on. Finish opens it in the "
                         "Viewer, where you can open your own images, DICOM series or NIfTI volumes.")
        self.setFinalPage(True)
        layout = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.viewer = ViewerWidget()
        layout.addWidget(self.viewer, 1)

    @property
    def bundle(self) -> str | None:
        return self.training_page.bundle

    def initializePage(self) -> None:  # noqa: N802 (Qt naming)
        result, bundle = self.training_page.result, self.bundle
        if bundle is None:
            self.summary.setText("No model was saved.")
            return
        best = getattr(result, "best_f1", None)
        run_dir = getattr(result, "run_dir", "") or str(Path(bundle).parent)
        self.summary.setText(
            f"Best validation {HEADLINE_METRIC} <b>{'n/a' if best is None else f'{best:.3f}'}</b> · run "
            f"<b>{html.escape(Path(run_dir).name)}</b>, saved in <code>{html.escape(run_dir)}</code>")
        # the model is named by its run (as in the Viewer and the runs list), its folder is a tooltip
        self.summary.setToolTip(f"Model: {bundle}")
        self.example = pick_validation_example(self.state.config)
        show_prediction(self.viewer, bundle, self.example)
