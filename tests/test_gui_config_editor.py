"""Configuration page: the generated form, model <-> widget both ways, inline errors, diff, TOML."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from gui_fakes import gpu, snapshot
from medseg_gui.core import config as cfg
from medseg_gui.core.config import RunConfig
from medseg_gui.gui.config_editor import ConfigEditor
from medseg_gui.gui.state import AppState


@pytest.fixture
def editor(qtbot):
    widget = ConfigEditor(AppState(RunConfig()))
    qtbot.addWidget(widget)
    return widget


def widget_of(editor, dotted):
    return editor.rows[dotted].editor.widget


def test_form_is_generated_from_the_metadata(editor):
    for section in cfg.SECTIONS:
        for f in cfg.field_specs(section):
            dotted = f"{section}.{f.name}"
            row = editor.rows[dotted]
            assert f.metadata["help"] in row.label.toolTip()
            if dotted in ("dataset.class_names", "dataset.class_colors"):
                assert row.editor is None  # the class table
                continue
            widget = row.editor.widget
            tp, meta = str(f.type), f.metadata
            if meta.get("choices"):
                assert isinstance(widget, QComboBox)
                assert [widget.itemText(i) for i in range(widget.count())] == list(meta["choices"])
            elif tp == "bool":
                assert isinstance(widget, QCheckBox)
            elif tp == "int":
                assert isinstance(widget, QSpinBox)
                assert widget.suffix() == (f" {meta['unit']}" if meta["unit"] else "")
            elif tp == "float":
                assert isinstance(widget, QDoubleSpinBox)
            inside_advanced = editor.advanced_body.isAncestorOf(row.container)
            assert inside_advanced == bool(meta["advanced"]), dotted


def test_advanced_group_collapses(editor):
    editor.show()
    assert not editor.advanced_body.isVisible()
    editor.advanced_toggle.click()
    assert editor.advanced_body.isVisible()


def test_model_to_widget(editor):
    state = editor.state
    new = RunConfig()
    new.training.batch_size = 16
    new.training.variant = "b2"
    new.training.lr = 2e-4
    new.training.use_scheduler = False
    new.training.output_dir = "/tmp/somewhere"
    cfg.set_num_classes(new, 3, ["bg", "liver", "tumour"])
    state.set_config(new)
    assert widget_of(editor, "training.batch_size").value() == 16
    assert widget_of(editor, "training.variant").currentText() == "b2"
    assert widget_of(editor, "training.lr").value() == pytest.approx(2e-4)
    assert widget_of(editor, "training.lr").text() == "0.0002"
    assert widget_of(editor, "training.use_scheduler").isChecked() is False
    assert editor.rows["training.output_dir"].editor.line.text() == "/tmp/somewhere"
    table = editor.class_table
    assert table.rowCount() == 3
    assert [table.item(r, 0).text() for r in range(3)] == ["bg", "liver", "tumour"]
    assert [table.item(r, 1).text() for r in range(3)] == new.dataset.class_colors


def test_widget_to_model(editor, qtbot):
    state = editor.state
    with qtbot.waitSignal(state.config_changed):
        widget_of(editor, "training.batch_size").setValue(12)
    assert state.config.training.batch_size == 12
    widget_of(editor, "training.variant").setCurrentText("b1")
    assert state.config.training.variant == "b1"
    widget_of(editor, "dataset.augment_flip").setChecked(False)
    assert state.config.dataset.augment_flip is False
    widget_of(editor, "training.lr").setValue(5e-5)
    assert state.config.training.lr == pytest.approx(5e-5)
    line = editor.rows["training.output_dir"].editor.line
    line.clear()
    qtbot.keyClicks(line, "my_runs")
    assert state.config.training.output_dir == "my_runs"
    editor.class_table.item(1, 0).setText("gastric")
    assert state.config.dataset.class_names[1] == "gastric"
    editor.class_table.set_colour(2, "#123456")
    assert state.config.dataset.class_colors[2] == "#123456"


def test_lr_steps_geometrically(editor):
    box = widget_of(editor, "training.lr")
    box.setValue(3e-4)
    box.stepBy(1)
    assert editor.state.config.training.lr == pytest.approx(6e-4)


def test_class_count_keeps_names_and_colours_consistent(editor):
    widget_of(editor, "dataset.num_classes").setValue(6)
    ds = editor.state.config.dataset
    assert ds.num_classes == 6 and len(ds.class_names) == 6 and len(ds.class_colors) == 6
    assert editor.class_table.rowCount() == 6
    assert editor.is_valid()


def test_invalid_value_shows_inline_error_and_blocks_start(editor, qtbot):
    assert editor.is_valid()
    with qtbot.waitSignal(editor.validity_changed) as blocker:
        widget_of(editor, "training.batch_size").setValue(0)
    assert blocker.args == [False]
    assert not editor.is_valid()
    errors = editor.errors()
    assert "minimum" in errors["training.batch_size"]
    assert not editor.rows["training.batch_size"].error.isHidden()
    assert editor.rows["training.batch_size"].label.property("invalid") is True
    assert editor.banner.property("state") == "bad"
    with qtbot.waitSignal(editor.validity_changed) as blocker:
        widget_of(editor, "training.batch_size").setValue(4)
    assert blocker.args == [True] and editor.errors() == {}


def test_cross_field_problem_lands_on_the_class_table(editor):
    def mismatch(c):
        c.dataset.class_names = ["a", "b"]
    editor.state.edit_config(mismatch)
    assert "2 names for 4 classes" in editor.errors()["dataset.class_names"]
    assert not editor.is_valid()


def test_out_of_range_value_from_a_file_is_shown_not_clamped(editor, tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("[training]\nepochs = 20000\n", encoding="utf-8")
    assert editor.load_toml(path)
    assert editor.state.config.training.epochs == 20000
    assert widget_of(editor, "training.epochs").value() == 20000
    assert "maximum" in editor.errors()["training.epochs"]


def test_bad_toml_is_explained_and_changes_nothing(editor, tmp_path):
    before = editor.state.config.to_dict()
    path = tmp_path / "bad.toml"
    path.write_text("[training]\nbatch_sise = 4\n", encoding="utf-8")
    assert not editor.load_toml(path)
    assert "training.batch_sise" in editor.banner.text() and str(path) in editor.banner.text()
    assert editor.state.config.to_dict() == before


def test_save_and_load_round_trip_through_the_editor(editor, tmp_path):
    widget_of(editor, "training.epochs").setValue(42)
    widget_of(editor, "training.precision").setCurrentText("bf16-mixed")
    editor.class_table.item(0, 0).setText("void")
    path = tmp_path / "sub" / "run.toml"
    assert editor.save_toml(path)
    saved = editor.state.config.to_dict()
    assert cfg.load(path).to_dict() == saved
    editor.state.set_config(RunConfig())
    assert widget_of(editor, "training.epochs").value() == RunConfig().training.epochs
    assert editor.load_toml(path)
    assert editor.state.config.to_dict() == saved
    assert widget_of(editor, "training.epochs").value() == 42
    assert editor.class_table.item(0, 0).text() == "void"
    assert not list(path.parent.glob(".*.tmp")), "atomic save leaves no temp file"


def test_differences_from_recommendation_are_highlighted_and_reset(editor, qtbot):
    state = editor.state
    state.set_snapshot(snapshot(gpu()))
    rec = state.recommendation
    assert rec is not None
    state.use_recommendation()
    assert not any(r.label.property("differs") for r in editor.rows.values())
    assert not editor.reset_button.isEnabled()
    widget_of(editor, "training.batch_size").setValue(rec.config.training.batch_size + 1)
    row = editor.rows["training.batch_size"]
    assert row.label.property("differs") is True
    assert row.diff.text() == f"Recommended: {rec.config.training.batch_size}"
    differing = {d for d, r in editor.rows.items() if r.label.property("differs")}
    assert differing == set(cfg.diff(state.config, rec.config))
    assert editor.reset_button.isEnabled()
    qtbot.mouseClick(editor.reset_button, Qt.MouseButton.LeftButton)
    assert cfg.diff(state.config, rec.config) == {}
    assert row.label.property("differs") is False
    assert widget_of(editor, "training.batch_size").value() == rec.config.training.batch_size


def test_every_field_round_trips_widget_to_model(editor):
    """Setting each widget to a valid non-default value lands exactly that value in the config."""
    for section in cfg.SECTIONS:
        for f in cfg.field_specs(section):
            dotted = f"{section}.{f.name}"
            row = editor.rows[dotted]
            if row.editor is None:
                continue
            tp, meta = str(f.type), f.metadata
            current = dataclasses.asdict(editor.state.config)[section][f.name]
            if meta.get("choices"):
                value = next(c for c in meta["choices"] if c != current)
            elif tp == "bool":
                value = not current
            elif tp == "int":
                value = int(meta["min"]) + 1
            elif tp == "float":
                value = (meta["min"] + meta["max"]) / 2
            elif tp == "list[str]":
                value = ["0", "1"]
            else:
                value = "scratch" if f.name == "pretrained" else f"value-{f.name}"
            row.editor.set(value)
            row.editor.changed()
            got = getattr(getattr(editor.state.config, section), f.name)
            assert got == pytest.approx(value) if tp == "float" else got == value, dotted
