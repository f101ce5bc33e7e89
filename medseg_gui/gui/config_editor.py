"""The Configuration page: a form generated from the config dataclasses' metadata.

Each field's widget, range, unit, tooltip and label come from ``core.config`` (one source of truth);
problems come from ``core.config.validate`` and the highlighting from ``core.config.diff`` against the
recommendation. Widgets accept values outside the valid range on purpose, so a wrong value is shown
next to its field with the reason instead of being silently clamped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QValidator
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QColorDialog, QComboBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QFrame, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QScrollArea, QSpinBox, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from medseg_gui.core import config as cfg
from medseg_gui.core.config import ConfigError, RunConfig
from medseg_gui.core.config_checks import describe_problem, field_label
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState

INT_LIMIT = 2**31 - 1
# String fields that name files or folders: "dir" browses for a folder, "any" for a file or folder.
PATH_FIELDS = {"dataset.path": "dir", "training.output_dir": "dir", "training.pretrained": "any"}
# Fields edited together by one widget: the class table holds names and colours.
CLASS_FIELDS = ("dataset.class_names", "dataset.class_colors")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


class SciSpinBox(QDoubleSpinBox):
    """A float spin box that shows 3e-4 as 0.0003 (not 0.00) and steps wide ranges geometrically."""

    def __init__(self, log_steps: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self._log = log_steps
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt naming)
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text.replace(self.suffix(), "").strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        body = text.replace(self.suffix(), "").strip()
        try:
            float(body)
        except ValueError:
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Acceptable, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        if self._log and self.value() > 0:
            self.setValue(self.value() * (2.0 ** steps))
        else:
            super().stepBy(steps)


class FieldEditor:
    """Adapter between one config field and its widget: ``get``/``set`` plus a change callback."""

    def __init__(self, dotted: str, f: dataclasses.Field, on_change: Callable[[str, Any], None]):
        self.dotted = dotted
        self.field = f
        self.meta = f.metadata
        self._on_change = on_change
        self.widget: QWidget = QWidget()
        self.input: QWidget = self.widget  # the widget that shows invalid/differs styling

    def get(self) -> Any:
        raise NotImplementedError

    def set(self, value: Any) -> None:
        raise NotImplementedError

    def changed(self, *_args) -> None:
        self._on_change(self.dotted, self.get())


class IntEditor(FieldEditor):
    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        box = QSpinBox()
        lo, hi = self.meta.get("min"), self.meta.get("max")
        box.setRange(int(min(0, lo or 0)), int(min(INT_LIMIT, (hi or INT_LIMIT) * 10)))
        if self.meta.get("unit"):
            box.setSuffix(f" {self.meta['unit']}")
        box.setKeyboardTracking(False)  # commit on Enter/focus-out/arrows, not on every digit
        box.valueChanged.connect(self.changed)
        self.widget = self.input = box

    def get(self) -> int:
        return int(self.widget.value())

    def set(self, value: int) -> None:
        box: QSpinBox = self.widget
        if value < box.minimum() or value > box.maximum():
            box.setRange(min(box.minimum(), value), max(box.maximum(), value))
        box.setValue(int(value))


class FloatEditor(FieldEditor):
    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        lo, hi = self.meta.get("min"), self.meta.get("max")
        box = SciSpinBox(log_steps=bool(lo and hi and hi / lo >= 1000))
        box.setRange(min(0.0, lo or 0.0), (hi or 1e9) * 10)
        if not box._log:
            box.setSingleStep(0.05 if (hi or 1) <= 1 else 1.0)
        if self.meta.get("unit"):
            box.setSuffix(f" {self.meta['unit']}")
        box.setKeyboardTracking(False)
        box.valueChanged.connect(self.changed)
        self.widget = self.input = box

    def get(self) -> float:
        return float(self.widget.value())

    def set(self, value: float) -> None:
        box: QDoubleSpinBox = self.widget
        if value < box.minimum() or value > box.maximum():
            box.setRange(min(box.minimum(), value), max(box.maximum(), value))
        box.setValue(float(value))


class BoolEditor(FieldEditor):
    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        box = QCheckBox()
        box.toggled.connect(self.changed)
        self.widget = self.input = box

    def get(self) -> bool:
        return self.widget.isChecked()

    def set(self, value: bool) -> None:
        self.widget.setChecked(bool(value))


class ChoiceEditor(FieldEditor):
    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        box = QComboBox()
        box.addItems(list(self.meta["choices"]))
        box.currentTextChanged.connect(self.changed)
        self.widget = self.input = box

    def get(self) -> str:
        return self.widget.currentText()

    def set(self, value: str) -> None:
        box: QComboBox = self.widget
        if box.findText(value) < 0:  # a value from a file that is not a choice: show it, flagged
            box.addItem(value)
        box.setCurrentText(value)


class TextEditor(FieldEditor):
    """Plain text, or a path with a Browse… button (``PATH_FIELDS``)."""

    def __init__(self, dotted, f, on_change, browse: str | None = None):
        super().__init__(dotted, f, on_change)
        self.line = QLineEdit()
        self.line.textEdited.connect(self.changed)
        self.input = self.line
        if browse is None:
            self.widget = self.line
            return
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        row.addWidget(self.line, 1)
        if dotted == "dataset.path":
            demo = QToolButton()
            demo.setText("Demo")
            demo.setToolTip("Use the built-in synthetic demo dataset")
            demo.clicked.connect(lambda: self._pick("demo"))
            row.addWidget(demo)
        if dotted == "training.pretrained":
            self.line.setPlaceholderText("auto, hub, scratch or a path")
        button = QToolButton()
        button.setText("Browse…")
        button.clicked.connect(lambda: self._browse(browse))
        row.addWidget(button)

    def _browse(self, kind: str) -> None:
        start = self.line.text() if Path(self.line.text()).expanduser().exists() else str(Path.home())
        if kind == "dir":
            path = QFileDialog.getExistingDirectory(self.widget, self.meta.get("label", "Folder"), start)
        else:
            path, _ = QFileDialog.getOpenFileName(self.widget, self.meta.get("label", "File"), start,
                                                  "Weights (*.safetensors);;All files (*)")
        if path:
            self._pick(path)

    def _pick(self, text: str) -> None:
        self.line.setText(text)
        self.changed()

    def get(self) -> str:
        return self.line.text()

    def set(self, value: str) -> None:
        self.line.setText(str(value))


class ListEditor(FieldEditor):
    """A list of text values typed as "a, b, c" (e.g. the GPUs to use)."""

    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        self.line = QLineEdit()
        self.line.setPlaceholderText("empty, or values separated by commas")
        self.line.textEdited.connect(self.changed)
        self.widget = self.input = self.line

    def get(self) -> list[str]:
        return [part.strip() for part in self.line.text().split(",") if part.strip()]

    def set(self, value: list[str]) -> None:
        self.line.setText(", ".join(str(v) for v in value))


class ListEditor(TextEditor):
    """A list of text as comma-separated entries (the GPUs to use: 0, 1 or their UUIDs)."""

    def __init__(self, dotted, f, on_change):
        super().__init__(dotted, f, on_change)
        self.line.setPlaceholderText("empty: the GPU with the most free memory")

    def get(self) -> list[str]:
        return [part.strip() for part in self.line.text().split(",") if part.strip()]

    def set(self, value: list[str]) -> None:
        self.line.setText(", ".join(value))


class ClassTable(QTableWidget):
    """Class names and colours together, one row per class, with a colour swatch per row."""

    edited = Signal(list, list)  # names, colours

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Name", "Colour"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        self.setColumnWidth(1, 110)
        self.verticalHeader().setDefaultSectionSize(26)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setToolTip("Double-click a name to rename the class; click a colour to change it.")
        self.itemChanged.connect(self._item_changed)
        self.cellClicked.connect(self._cell_clicked)
        self._names: list[str] = []
        self._colours: list[str] = []

    def values(self) -> tuple[list[str], list[str]]:
        return list(self._names), list(self._colours)

    def set_values(self, names: list[str], colours: list[str]) -> None:
        if (names, colours) == (self._names, self._colours):
            return
        self._names, self._colours = list(names), list(colours)
        self.blockSignals(True)
        rows = max(len(names), len(colours))
        self.setRowCount(rows)
        for row in range(rows):
            name = QTableWidgetItem(names[row] if row < len(names) else "")
            self.setItem(row, 0, name)
            colour = colours[row] if row < len(colours) else ""
            item = QTableWidgetItem(colour)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            if QColor.isValidColorName(colour) and cfg._is_hex_colour(colour):
                item.setData(Qt.ItemDataRole.DecorationRole, QColor(colour))
            else:
                item.setForeground(QColor(style.ERROR))
            self.setItem(row, 1, item)
        self.setVerticalHeaderLabels([str(i) for i in range(rows)])
        self.setFixedHeight(min(8, max(rows, 2)) * 26 + self.horizontalHeader().height() + 4)
        self.blockSignals(False)

    def set_colour(self, row: int, colour: str) -> None:
        """Change one row's colour (what the colour dialog does) and report the edit."""
        colours = list(self._colours)
        while len(colours) <= row:
            colours.append("#000000")
        colours[row] = colour
        self.set_values(self._names, colours)
        self.edited.emit(list(self._names), list(self._colours))

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        names = list(self._names)
        while len(names) <= item.row():
            names.append("")
        names[item.row()] = item.text()
        self._names = names
        self.edited.emit(list(self._names), list(self._colours))

    def _cell_clicked(self, row: int, column: int) -> None:
        if column != 1:
            return
        current = self._colours[row] if row < len(self._colours) else "#000000"
        chosen = QColorDialog.getColor(QColor(current), self, f"Colour of class {row}")
        if chosen.isValid():
            self.set_colour(row, chosen.name())


class FieldRow:
    """Label + editor + a caption line (inline error, "Recommended:") for one field.

    The caption's line is reserved even when empty, so an error or a hint appearing never pushes the
    fields below it down (two lines for the dataset folder, whose error carries its fix).
    """

    def __init__(self, dotted: str, editor: FieldEditor | None, widget: QWidget, label_text: str, help: str):
        self.dotted = dotted
        self.editor = editor
        self.label = QLabel(label_text)
        self.label.setProperty("role", "fieldLabel")
        self.label.setToolTip(help)
        widget.setToolTip(help)
        self.container = QWidget()
        box = QVBoxLayout(self.container)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(2)
        box.addWidget(widget)
        self.caption = QWidget()
        line = QHBoxLayout(self.caption)
        line.setContentsMargins(0, 0, 0, 0)
        line.setSpacing(10)
        self.error = QLabel()
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.hide()
        line.addWidget(self.error, 1, Qt.AlignmentFlag.AlignTop)
        self.diff = QLabel()
        self.diff.setProperty("role", "diff")
        self.diff.hide()
        line.addWidget(self.diff, 0, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight)
        reserved = 2 if dotted == "dataset.path" else 1
        self.caption.setMinimumHeight(reserved * self.error.fontMetrics().lineSpacing())
        box.addWidget(self.caption)
        self.styled = editor.input if editor is not None else widget

    def show_problems(self, reasons: list[str]) -> None:
        self.error.setText("\n".join(reasons))
        self.error.setVisible(bool(reasons))
        self._flag("invalid", bool(reasons))

    def show_diff(self, recommended: Any | None, differs: bool) -> None:
        self.diff.setText(f"Recommended: {_show(recommended)}" if differs else "")
        self.diff.setVisible(differs)
        self._flag("differs", differs)

    def _flag(self, name: str, on: bool) -> None:
        for widget in (self.label, self.styled):
            if bool(widget.property(name)) != on:
                widget.setProperty(name, on)
                style.repolish(widget)


class ConfigEditor(QWidget):
    """The generated form; model → widgets on ``config_changed``, widgets → model on every edit."""

    validity_changed = Signal(bool)
    problems_changed = Signal(int)  # the count the banner shows (the status bar shows the same)
    file_synced = Signal(str)  # a TOML file now holds exactly the shown configuration (loaded or saved)

    def __init__(self, state: AppState, parent: QWidget | None = None, *, compact: bool = False):
        """``compact``: one column and no page title, for a narrower place with its own heading (the
        wizard), so fields keep a readable width instead of being cut off ("emo", "backgrou…")."""
        super().__init__(parent)
        self.setObjectName("page")
        self.state = state
        self.compact = compact
        self.rows: dict[str, FieldRow] = {}
        self._valid: bool | None = None
        self._problem_count: int | None = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(*((0, 0, 0, 0) if compact else (24, 20, 24, 16)))
        outer.setSpacing(8 if compact else 12)
        head = QHBoxLayout()
        if not compact:
            title = QLabel("Configuration")
            title.setProperty("role", "pageTitle")
            title.setFont(style.scaled_font(self.font(), 1.6, bold=True))
            head.addWidget(title)
        head.addStretch(1)
        self.load_button = QPushButton("Load TOML…")
        self.save_button = QPushButton("Save TOML…")
        self.reset_button = QPushButton("Reset to recommended")
        self.reset_button.setProperty("primary", True)
        for button in (self.load_button, self.save_button, self.reset_button):
            head.addWidget(button)
        outer.addLayout(head)
        self.banner = QLabel()
        self.banner.setProperty("role", "banner")
        self.banner.setWordWrap(True)
        outer.addWidget(self.banner)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        grid = QVBoxLayout(body)
        grid.setContentsMargins(0, 0, 4, 0)
        grid.setSpacing(14)
        columns = QVBoxLayout() if compact else QHBoxLayout()
        columns.setSpacing(14 if compact else 16)
        columns.addWidget(self._section_card("Dataset", "dataset", advanced=False), 1)
        columns.addWidget(self._section_card("Training", "training", advanced=False), 1)
        grid.addLayout(columns)
        grid.addWidget(self._advanced_card())
        grid.addStretch(1)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

        self.load_button.clicked.connect(self._load_clicked)
        self.save_button.clicked.connect(self.save_dialog)
        self.reset_button.clicked.connect(self.state.use_recommendation)
        state.config_changed.connect(self.show_config)
        state.recommendation_changed.connect(lambda _r: self._refresh_marks())
        self.show_config(state.config)

    # ----- building ------------------------------------------------------------------------------
    def _section_card(self, title: str, section: str, advanced: bool) -> QFrame:
        card = QFrame()
        card.setProperty("card", True)
        box = QVBoxLayout(card)
        box.setContentsMargins(18, 14, 18, 16)
        heading = QLabel(title)
        heading.setProperty("role", "cardTitle")
        heading.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        box.addWidget(heading)
        form = self._form()
        self._add_fields(form, section, advanced)
        box.addLayout(form)
        box.addStretch(1)
        return card

    def _advanced_card(self) -> QFrame:
        card = QFrame()
        card.setProperty("card", True)
        box = QVBoxLayout(card)
        box.setContentsMargins(18, 10, 18, 10)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName("advancedToggle")
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        box.addWidget(self.advanced_toggle)
        self.advanced_body = QWidget()
        columns = QVBoxLayout(self.advanced_body) if self.compact else QHBoxLayout(self.advanced_body)
        columns.setContentsMargins(0, 4, 0, 4)
        columns.setSpacing(12 if self.compact else 32)
        for section in cfg.SECTIONS:
            form = self._form()
            self._add_fields(form, section, advanced=True)
            columns.addLayout(form, 1)
        self.advanced_body.hide()
        box.addWidget(self.advanced_body)
        self.advanced_toggle.toggled.connect(self.set_advanced_visible)
        return card

    def set_advanced_visible(self, visible: bool) -> None:
        self.advanced_toggle.setChecked(visible)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if visible else Qt.ArrowType.RightArrow)
        self.advanced_body.setVisible(visible)

    @staticmethod
    def _form() -> QFormLayout:
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(2)  # each field's reserved caption line already separates the rows
        return form

    def _add_fields(self, form: QFormLayout, section: str, advanced: bool) -> None:
        for f in cfg.field_specs(section):
            if bool(f.metadata.get("advanced")) != advanced:
                continue
            dotted = f"{section}.{f.name}"
            if dotted == CLASS_FIELDS[1]:
                continue  # edited in the same table as the names
            help_text = f.metadata.get("help", "")
            label_text = f.metadata.get("label") or f.name
            if dotted == CLASS_FIELDS[0]:
                colours_help = cfg.DatasetConfig.__dataclass_fields__["class_colors"].metadata["help"]
                help_text = f"{help_text} {colours_help}"
                self.class_table = ClassTable()
                self.class_table.edited.connect(self._classes_edited)
                row = FieldRow(dotted, None, self.class_table, "Classes (name, colour)", help_text)
                self.rows[CLASS_FIELDS[0]] = row
                self.rows[CLASS_FIELDS[1]] = row
            else:
                editor = self._editor_for(dotted, f)
                row = FieldRow(dotted, editor, editor.widget, label_text, help_text)
                self.rows[dotted] = row
            form.addRow(row.label, row.container)

    def _editor_for(self, dotted: str, f: dataclasses.Field) -> FieldEditor:
        tp = str(f.type)
        if f.metadata.get("choices"):
            return ChoiceEditor(dotted, f, self._edited)
        if tp == "bool":
            return BoolEditor(dotted, f, self._edited)
        if tp == "int":
            return IntEditor(dotted, f, self._edited)
        if tp == "float":
            return FloatEditor(dotted, f, self._edited)
        if tp == "list[str]":
            return ListEditor(dotted, f, self._edited)
        if tp == "list[str]":
            return ListEditor(dotted, f, self._edited)
        return TextEditor(dotted, f, self._edited, browse=PATH_FIELDS.get(dotted))

    # ----- widgets -> state ----------------------------------------------------------------------
    def _edited(self, dotted: str, value: Any) -> None:
        if dotted == "dataset.num_classes":
            # core keeps names and colours consistent with the count
            self.state.edit_config(lambda c: cfg.set_num_classes(c, int(value)))
        else:
            self.state.set_value(dotted, value)

    def _classes_edited(self, names: list[str], colours: list[str]) -> None:
        def change(c: RunConfig) -> None:
            c.dataset.class_names = names
            c.dataset.class_colors = colours
        self.state.edit_config(change)

    # ----- state -> widgets ----------------------------------------------------------------------
    def show_config(self, config: RunConfig) -> None:
        for dotted, row in self.rows.items():
            if row.editor is None:
                continue
            section, _, name = dotted.partition(".")
            value = getattr(getattr(config, section), name)
            if row.editor.get() != value:
                row.editor.widget.blockSignals(True)
                if isinstance(row.editor, (TextEditor, ListEditor)):
                    row.editor.line.blockSignals(True)
                row.editor.set(value)
                row.editor.widget.blockSignals(False)
                if isinstance(row.editor, (TextEditor, ListEditor)):
                    row.editor.line.blockSignals(False)
        self.class_table.set_values(config.dataset.class_names, config.dataset.class_colors)
        self._refresh_marks()

    def _refresh_marks(self) -> None:
        problems = self.state.problems()
        by_field: dict[str, list[str]] = {}
        loose: list[str] = []
        for p in problems:
            if p.field in self.rows:
                by_field.setdefault(self.rows[p.field].dotted, []).append(p.reason)
            else:
                loose.append(describe_problem(p))
        seen = set()
        for row in self.rows.values():
            if id(row) in seen:
                continue
            seen.add(id(row))
            row.show_problems(by_field.get(row.dotted, []))
        differences = self.state.differences()
        rec = self.state.recommendation
        for dotted, row in self.rows.items():
            if dotted == CLASS_FIELDS[1]:
                continue
            if dotted == CLASS_FIELDS[0]:
                differs = any(f in differences for f in CLASS_FIELDS)
                recommended = rec.config.dataset.class_names if rec else None
            else:
                differs = dotted in differences
                recommended = differences[dotted][1] if differs else None
            row.show_diff(recommended, differs)
        self.reset_button.setEnabled(rec is not None and bool(differences))
        self._show_banner(problems, loose, len(differences) if rec else None)
        valid = not problems
        if len(problems) != self._problem_count:
            self._problem_count = len(problems)
            self.problems_changed.emit(len(problems))
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)

    def _show_banner(self, problems, loose: list[str], n_diff: int | None) -> None:
        if problems:
            in_rows = [p for p in problems if p.field in self.rows]
            named = sorted({field_label(p.field) for p in in_rows}, key=[field_label(p.field) for p in in_rows].index)
            text = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} to fix before training can start"
            if named:
                text += f" — marked in red below: {', '.join(named)}."
            if loose:
                text += "\n" + "\n".join(loose)
            state = "bad"
        else:
            text = "Ready to train."
            if n_diff:
                text += (f" {n_diff} setting{'s differ' if n_diff != 1 else ' differs'} from the "
                         "recommendation (highlighted).")
            elif n_diff == 0:
                text += " Matches the recommendation for this machine."
            state = "ok"
        self.banner.setText(text)
        if self.banner.property("state") != state:
            self.banner.setProperty("state", state)
            style.repolish(self.banner)

    # ----- public --------------------------------------------------------------------------------
    def problem_count(self) -> int:
        return len(self.state.problems())

    def is_valid(self) -> bool:
        """True when the config has no problems (the Training tab's Start follows ``validity_changed``)."""
        return not self.state.problems()

    def errors(self) -> dict[str, str]:
        """Field -> the error text shown next to it (for tests and the training tab's message)."""
        return {d: r.error.text() for d, r in self.rows.items() if r.error.text()}

    def load_toml(self, path: str | Path) -> bool:
        """Load a TOML file; a bad file leaves the config unchanged and explains itself in the banner."""
        try:
            self.state.load_config(path)
        except ConfigError as exc:
            self.banner.setText(str(exc))
            self.banner.setProperty("state", "bad")
            style.repolish(self.banner)
            return False
        self.file_synced.emit(str(path))
        return True

    def save_toml(self, path: str | Path) -> bool:
        try:
            self.state.save_config(path)
        except OSError as exc:
            self.banner.setText(f"Could not save {path}: {exc}. Choose another folder.")
            self.banner.setProperty("state", "bad")
            style.repolish(self.banner)
            return False
        self.file_synced.emit(str(path))
        return True

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", str(Path.home()),
                                              "TOML files (*.toml);;All files (*)")
        if path:
            self.load_toml(path)

    def save_dialog(self) -> None:
        """Ask where to save the configuration (a TOML file), then save it there."""
        path, _ = QFileDialog.getSaveFileName(self, "Save configuration", str(Path.home() / "config.toml"),
                                              "TOML files (*.toml)")
        if path:
            if not path.endswith(".toml"):
                path += ".toml"
            self.save_toml(path)
