"""Wizard step 2: the data layer's validation report; Next stays disabled while training cannot go ahead."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget, QWizardPage)

from medseg_gui.core import config as cfg
from medseg_gui.core.words import plural
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState
from medseg_gui.gui.wizard.tasks import start_task

MAX_ROWS = 1000  # problem rows shown; the count says when there are more


@dataclass
class DatasetCheck:
    path: str  # as the config holds it ("demo" or a folder)
    summary: Any  # data.summary.DatasetSummary or None
    report: Any  # validate.ValidationReport


def check_dataset(path: str, config: cfg.RunConfig) -> DatasetCheck:
    """Read the classes from the data (for the recommendation), then the full report with that count.

    Runs in a worker thread: the demo may be generated here and a large folder takes seconds.
    """
    from medseg_gui.core.data.formats import resolve_dataset_path
    from medseg_gui.core.data.validate import summary_for_recommendation, validate_dataset

    ds = config.dataset
    summary, _problem = summary_for_recommendation(path)
    num_classes = summary.num_classes if summary is not None else ds.num_classes
    names = (summary.class_names if summary is not None else None) or (
        ds.class_names if len(ds.class_names) == num_classes else None)
    root = resolve_dataset_path(path, ds.image_size)
    report = validate_dataset(root, num_classes, class_names=names, val_fraction=ds.val_fraction,
                              seed=config.training.seed)
    return DatasetCheck(path, summary, report)


def report_html(report: Any) -> str:
    """The report's numbers as a compact table (the problems get their own list)."""
    def row(name: str, value: str) -> str:
        return f"<tr><td style='padding-right:14px;color:{style.MUTED}'>{name}</td><td>{value}</td></tr>"

    pairs = ", ".join(f"{s} {report.pairs_found.get(s, 0)} ({report.pairs_usable.get(s, 0)} usable)"
                      for s in ("train", "valid"))
    sizes = ", ".join(f"{k} × {n}" for k, n in sorted(report.image_sizes.items(), key=lambda kv: -kv[1])[:4])
    modes = ", ".join(f"{k} × {n}" for k, n in report.image_modes.items())
    classes = "".join(
        f"<tr><td>{i}</td><td style='padding:0 10px'>{html.escape(name)}</td><td align='right'>{100 * share:.2f} %"
        f"</td><td style='padding-left:10px;color:{style.MUTED}'>in {n} masks</td></tr>"
        for i, (name, share, n) in enumerate(zip(
            report.class_names or [f"class_{i}" for i in range(report.num_classes)], report.class_share,
            report.class_masks)))
    rows = [row("Folder", html.escape(str(report.root))),
            row("Layout", f"{report.layout} — {html.escape(report.split_note)}"),
            row("Pairs", pairs), row("Image sizes", html.escape(sizes) or "–"),
            row("Image modes", f"{html.escape(modes)} → the loader ships "
                               f"{plural(report.image_channels, 'channel')}"),
            row("Checked", f"{report.masks_checked} of {report.masks_total} masks decoded in {report.elapsed_s:.1f} s")]
    return (f"<table>{''.join(rows)}</table><p style='margin:8px 0 2px 0'><b>Classes</b> (share of pixels)</p>"
            f"<table>{classes}</table>")


class ValidationPage(QWizardPage):
    def __init__(self, state: AppState, dataset_path, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._dataset_path = dataset_path  # callable: the path chosen on the previous page
        self.check: DatasetCheck | None = None
        self.error: str | None = None
        self._ticket = 0
        self.setTitle("Check the dataset")
        self.setSubTitle("Every pair is checked before training: missing partners, unreadable or truncated files, "
                         "image/mask size mismatches and mask values outside the classes. Bad pairs are skipped.")
        layout = QVBoxLayout(self)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        layout.addWidget(self.progress)
        self.banner = QLabel()
        self.banner.setProperty("role", "banner")
        self.banner.setWordWrap(True)
        layout.addWidget(self.banner)
        self.details = QLabel()
        self.details.setWordWrap(True)
        layout.addWidget(self.details)
        self.problems_title = QLabel()
        self.problems_title.setProperty("role", "cardTitle")
        layout.addWidget(self.problems_title)
        self.problems = QTableWidget(0, 3)
        self.problems.setHorizontalHeaderLabels(["File", "Problem", "What is wrong and what to do"])
        self.problems.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.problems.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems.setWordWrap(True)
        layout.addWidget(self.problems, 10)
        self.warnings = QLabel()
        self.warnings.setProperty("role", "warning")
        self.warnings.setWordWrap(True)
        layout.addWidget(self.warnings)
        layout.addStretch(1)  # without bad files the space stays below, not inside the banner
        row = QHBoxLayout()
        self.recheck = QPushButton("Check again")
        self.recheck.clicked.connect(self.initializePage)
        row.addWidget(self.recheck)
        row.addStretch(1)
        layout.addLayout(row)

    def initializePage(self) -> None:  # noqa: N802 (Qt naming)
        path = self._dataset_path()
        self.check, self.error = None, None
        self.progress.setVisible(True)
        self.recheck.setEnabled(False)
        self._set_banner("Generating the demo dataset and checking it…" if path == "demo"
                         else f"Checking {path}…", None)
        self.details.setText("")
        self.problems_title.setText("")
        self.problems.setRowCount(0)
        self.problems.setVisible(False)
        self.warnings.setVisible(False)
        config = self.state.config.copy()
        self._ticket, _task = start_task(self, lambda _p, _s: check_dataset(path, config), self._done,
                                         self._failed, name="wizard-validate")
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802
        return self.check is not None and bool(self.check.report.can_train)

    def validatePage(self) -> bool:  # noqa: N802
        """Next only after a passed check: QWizard.next() (Enter, or code) ignores the button's state."""
        return self.isComplete()

    def is_busy(self) -> bool:
        return self.check is None and self.error is None

    def _set_banner(self, text: str, ok: bool | None) -> None:
        self.banner.setText(text)
        self.banner.setProperty("state", "" if ok is None else "ok" if ok else "bad")
        self.banner.style().unpolish(self.banner)
        self.banner.style().polish(self.banner)

    def _done(self, ticket: int, check: DatasetCheck) -> None:
        if ticket != self._ticket:
            return
        report = check.report
        self.check = check
        self.progress.setVisible(False)
        self.recheck.setEnabled(True)
        verdict = html.escape(report.verdict)
        if verdict.lower().startswith("training can"):  # the verdict already says it: not twice
            verdict = verdict[0].upper() + verdict[1:]
        else:
            verdict = ("Training can go ahead: " if report.can_train else "Training cannot go ahead: ") + verdict
        self._set_banner(("✓ " if report.can_train else "✗ ") + verdict
                         + ("." if report.can_train else ". Go back and choose or fix the dataset."),
                         bool(report.can_train))
        self.details.setText(report_html(report))
        self.problems.setVisible(bool(report.problems))
        if report.problems:
            shown = report.problems[:MAX_ROWS]
            more = f" (first {MAX_ROWS} shown)" if len(report.problems) > MAX_ROWS else ""
            self.problems_title.setText(f"{plural(len(report.problems), 'bad file')}, skipped{more}")
            self.problems.setRowCount(len(shown))
            for r, problem in enumerate(shown):
                for c, text in enumerate((problem.path, problem.kind, problem.message)):
                    item = QTableWidgetItem(text)
                    item.setToolTip(text)
                    self.problems.setItem(r, c, item)
            self.problems.resizeColumnsToContents()
        else:
            self.problems_title.setText("No bad files.")
        self.warnings.setText("<br>".join(f"⚠ {html.escape(w)}" for w in report.warnings))
        self.warnings.setVisible(bool(report.warnings))
        if report.can_train:
            self._apply_to_state(check)
        self.completeChanged.emit()

    def _apply_to_state(self, check: DatasetCheck) -> None:
        """The dataset and its classes go into the wizard's config and the recommendation's inputs."""
        summary = check.summary
        self.state.set_dataset(check.path, summary)
        if summary is not None:
            from_report = list(check.report.class_names)
            names = summary.class_names or (from_report if len(from_report) == summary.num_classes else None)
            if summary.num_classes != self.state.config.dataset.num_classes or summary.class_names:
                self.state.edit_config(lambda c: cfg.set_num_classes(c, summary.num_classes, names))

    def _failed(self, ticket: int, message: str) -> None:
        if ticket != self._ticket:
            return
        self.error = message
        self.progress.setVisible(False)
        self.recheck.setEnabled(True)
        self._set_banner(f"✗ The dataset cannot be read: {html.escape(message)}", False)
        self.completeChanged.emit()
