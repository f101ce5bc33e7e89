"""Problems a configuration has on this computer, beyond ``config.validate``'s ranges and types.

``validate`` judges the values; a dataset folder that does not exist is valid TOML but will not
train, and the user should hear it at the field, not only when pressing Start. The fixes name what
the app offers (Browse…, Demo, the wizard), since these lines are read in the Configuration page.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from medseg_gui.core import config as cfg
from medseg_gui.core.config import ConfigProblem


def dataset_path_problem(path: str) -> ConfigProblem | None:
    """The dataset folder is missing or a file (None when it exists, is 'demo', or is empty: validate says so)."""
    text = path.strip()
    if not text or text.lower() == "demo":
        return None
    root = Path(text).expanduser()
    # Short enough for the form's two reserved lines; the path itself is in the field above it.
    fix = "choose one with Browse…, click Demo, or import your data with File → New training wizard."
    if not root.exists():
        return ConfigProblem("dataset.path", f"Folder not found: {fix}")
    if not root.is_dir():
        return ConfigProblem("dataset.path", f"This is a file, not a folder: {fix}")
    return None


def problems_before_start(config: cfg.RunConfig) -> list[ConfigProblem]:
    """Every problem at once: ``validate``'s, then the ones only this computer can tell."""
    problems = list(cfg.validate(config))
    extra = dataset_path_problem(config.dataset.path)
    if extra is not None and not any(p.field == extra.field for p in problems):
        problems.append(extra)
    return problems


def field_label(dotted: str) -> str:
    """The label a form shows for 'section.field' (what a person reads instead of the key)."""
    section, _, name = dotted.partition(".")
    section_cls = cfg.SECTIONS.get(section)
    if section_cls is None:
        return dotted
    for f in dataclasses.fields(section_cls):
        if f.name == name:
            return f.metadata.get("label") or name.replace("_", " ")
    return dotted


def describe_problem(problem: ConfigProblem) -> str:
    """'Epochs: 0 is below the minimum 1' — the problem in the form's words."""
    return f"{field_label(problem.field)}: {problem.reason}" if problem.field else problem.reason
