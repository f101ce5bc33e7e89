"""Every text a person reads speaks their language: no Markdown backticks, no private words ("brief",
"seed's", "tutorial", issue numbers) and no "1 workers" plurals. Walks the widget texts of every page of
the main window and of the wizard (pytest-qt, offscreen) and the CLI's recommend/preflight output, so a
new string with one of these cannot slip in unseen."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import (QAbstractButton, QComboBox, QGroupBox, QLabel, QLineEdit,  # noqa: E402
                               QListWidget, QPlainTextEdit, QTableWidget, QTextEdit, QTreeWidget, QWidget,
                               QWizardPage)

from medseg_gui.cli import main  # noqa: E402
from medseg_gui.core import config as cfg  # noqa: E402
from medseg_gui.gui.state import AppState  # noqa: E402

PRIVATE = [
    (re.compile(r"`"), "a Markdown backtick"),
    (re.compile(r"\bbrief\b", re.I), "'brief'"),
    (re.compile(r"\bseed's\b|\bthe seed\b", re.I), "'the seed'"),
    (re.compile(r"\btutorial", re.I), "'tutorial'"),
    (re.compile(r"\bissues?\s*#?\d+", re.I), "an issue number"),
    (re.compile(r"(?<![\d.])1 (workers|epochs|steps|images|classes|warnings|problems|errors|GPUs|batches|"
                r"cases|files|runs|items|slices|seconds|minutes)\b"), "a plural after 1"),
]


def bad_words(text: str) -> list[str]:
    found = []
    for pattern, why in PRIVATE:
        for m in pattern.finditer(text):
            found.append(f"{why}: ...{text[max(0, m.start() - 80):m.end() + 40]!r}...")
    return found


def test_the_patterns_catch_what_they_should():
    assert bad_words("run `medseg data check`") and bad_words("The brief's tip 3") and bad_words("1 workers")
    assert bad_words("(the tutorial does)") and bad_words("see issue 18") and bad_words("the seed's table")
    assert not bad_words("1 worker, 2 workers, 11 epochs, 0.1 steps, random seed 42")


def widget_texts(root: QWidget) -> list[str]:
    """Every string a widget under ``root`` can show: labels, buttons, tooltips, placeholders, titles,
    combo and list items, table cells and headers, text boxes."""
    out: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        out += [w.toolTip(), w.whatsThis(), w.windowTitle()]
        if isinstance(w, (QLabel, QAbstractButton)):
            out.append(w.text())
        if isinstance(w, QLineEdit):
            out += [w.text(), w.placeholderText()]
        if isinstance(w, (QPlainTextEdit, QTextEdit)):
            out += [w.toPlainText(), w.placeholderText()]
        if isinstance(w, QGroupBox):
            out.append(w.title())
        if isinstance(w, QWizardPage):
            out += [w.title(), w.subTitle()]
        if isinstance(w, QComboBox):
            out += [w.itemText(i) for i in range(w.count())]
        if isinstance(w, QListWidget):
            out += [w.item(i).text() for i in range(w.count())]
        if isinstance(w, QTableWidget):
            out += [w.horizontalHeaderItem(c).text() for c in range(w.columnCount()) if w.horizontalHeaderItem(c)]
            out += [w.item(r, c).text() for r in range(w.rowCount()) for c in range(w.columnCount()) if w.item(r, c)]
        if isinstance(w, QTreeWidget):
            header = w.headerItem()
            out += [header.text(c) for c in range(header.columnCount())]
    return [t for t in out if t]


def test_every_page_of_the_main_window_and_the_wizard(qtbot, tmp_path):
    from medseg_gui.gui.main_window import MainWindow
    from medseg_gui.gui import workers
    from tests.test_wizard import make_wizard, start_config

    config = start_config()
    config.training.output_dir = str(tmp_path / "runs")
    window = MainWindow(AppState(config), poll_hardware=False, persist=False)
    qtbot.addWidget(window)
    window.show()
    pages = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert len(pages) >= 4, pages
    problems: list[str] = []
    seen: set[str] = set()
    for name in pages:  # each page shown in turn: some fill their texts when shown
        window.show_page(name)
        qtbot.wait(50)
        texts = widget_texts(window)
        seen.update(texts)
        problems += [f"{name}: {p}" for text in texts for p in bad_words(text)]
    assert len(seen) > 150 and "Start training" in seen, len(seen)  # the walk reached every page's widgets
    wizard = make_wizard(qtbot, window)
    try:
        texts = widget_texts(wizard)
        assert any("Step 1 of 5" in t for t in texts)  # the walk reaches the wizard's pages
        problems += [f"wizard: {p}" for text in texts for p in bad_words(text)]
    finally:
        wizard.reject()
        assert workers.cancel_all(30_000)
    assert not problems, "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("vram", ["0", "6", "24"])
def test_recommend_text_output(vram, capsys):
    assert main(["recommend", "--vram-gb", vram]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert not bad_words(out), bad_words(out)


@pytest.mark.usefixtures("one_torch_thread")
def test_preflight_text_output_good_and_bad(tmp_path, capsys):
    from engine_helpers import tiny_config
    from medseg_gui.core.data.demo import generate_demo

    config = tiny_config(tmp_path, epochs=1)
    cfg.set_num_classes(config, 4)
    config.dataset.path = str(generate_demo(tmp_path / "data", n=8, size=64))
    good = tmp_path / "good.toml"
    cfg.save(config, good)
    config.dataset.path = str(tmp_path / "no such folder")
    config.training.num_workers = 1
    config.training.epochs = 1
    bad = tmp_path / "bad.toml"
    cfg.save(config, bad)
    outputs = []
    for path in (good, bad):
        main(["preflight", "--config", str(path)])
        outputs.append(capsys.readouterr().out)
    assert "Ready to train." in outputs[0]
    assert outputs[1].strip() and outputs[1] != outputs[0]
    problems = [p for out in outputs for p in bad_words(out)]
    assert not problems, problems


def test_the_wizard_training_page_has_one_header(qtbot):
    """"Step 4 of 5 · Training" is the page's header; no second "Training the model" line under it
    (a two-part plan still says which part runs, without repeating the wizard's step counter)."""
    from medseg_gui.gui.wizard.training_page import TrainingPage

    page = TrainingPage(AppState(), use_plan=lambda: False)
    qtbot.addWidget(page)
    page.stages, page.stage = 1, 1
    page._show_stage()
    assert page.stage_label.isHidden() and not page.stage_label.text()
    page.stages = 2
    page._show_stage()
    assert not page.stage_label.isHidden() and page.stage_label.text().startswith("Part 1 of 2")
    assert "Training" not in page.stage_label.text()


def test_the_wizard_training_page_says_the_outcome_once(qtbot, tmp_path):
    """At the end the banner says "Training finished: …"; no header above it repeats it."""
    from medseg_gui.core import events as ev
    from medseg_gui.gui.wizard.training_page import TrainingPage

    page = TrainingPage(AppState(), use_plan=lambda: False)
    qtbot.addWidget(page)
    page._ended(ev.RunFinished(run_dir=str(tmp_path), stopped_early=False, epochs_done=1, steps_done=2,
                               best_f1=0.5, duration_s=3.0))
    assert page.stage_label.isHidden()
    assert sum("Training finished" in t for t in widget_texts(page)) <= 1
