"""Run configuration: what the user edits, what a run folder records, what the CLI reads.

Every field carries its help text, unit and valid range as dataclass metadata so the GUI can generate
its form and the validator can name the field and the reason without a second source of truth.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from medseg_gui.core.atomic import atomic_write_text

VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5")
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
COMPILE_MODES = ("off", "auto", "on")
ACCELERATORS = ("auto", "gpu", "cpu")
PRETRAINED_CHOICES = ("auto", "hub", "scratch")  # or a filesystem path

DEFAULT_CLASS_NAMES = ["background", "stomach", "small_bowel", "large_bowel"]
# The class palette, background first: the default classes' colours, then distinct ones for more
# classes. Here, in the base floor, because the config's defaults need it; the viewer and the overlays
# take theirs from ``colours_for``.
CLASS_PALETTE = ("#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                 "#bcf60c", "#fabebe", "#008080", "#e6beff")
DEFAULT_CLASS_COLORS = list(CLASS_PALETTE[:len(DEFAULT_CLASS_NAMES)])


def hub_id(variant: str) -> str:
    """The HF Hub model a variant starts from (ADE20k-finetuned weights, as the common tutorial uses)."""
    return f"nvidia/segformer-{variant}-finetuned-ade-512-512"


def meta(help: str, *, unit: str = "", min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None, label: str = "", advanced: bool = False) -> dict[str, Any]:
    return {"help": help, "unit": unit, "min": min, "max": max, "choices": choices,
            "label": label, "advanced": advanced}


@dataclass
class DatasetConfig:
    path: str = field(default="demo", metadata=meta(
        "Dataset folder (train/ + valid/ split, or flat images/ + masks/), or 'demo' for the built-in "
        "synthetic dataset.", label="Dataset"))
    image_size: int = field(default=288, metadata=meta(
        "Square side images and masks are resized to for training. Memory grows with its square.",
        unit="px", min=32, max=2048, label="Image size"))
    num_classes: int = field(default=4, metadata=meta(
        "Number of mask classes including background (mask values 0..N-1).", min=2, max=255,
        label="Classes"))
    class_names: list[str] = field(default_factory=lambda: list(DEFAULT_CLASS_NAMES), metadata=meta(
        "One name per class, background first.", label="Class names"))
    class_colors: list[str] = field(default_factory=lambda: list(DEFAULT_CLASS_COLORS), metadata=meta(
        "One #rrggbb colour per class for overlays.", label="Class colours"))
    val_fraction: float = field(default=0.2, metadata=meta(
        "Share of cases held out for validation when the dataset has no train/valid split.",
        min=0.05, max=0.5, label="Validation share"))
    augment_flip: bool = field(default=True, metadata=meta(
        "Random horizontal and vertical flips.", label="Flips"))
    augment_shift_scale_rotate: bool = field(default=True, metadata=meta(
        "Random shift, scale and rotation.", label="Shift/scale/rotate"))
    augment_brightness_contrast: bool = field(default=True, metadata=meta(
        "Random brightness and contrast.", label="Brightness/contrast"))
    augment_coarse_dropout: bool = field(default=True, metadata=meta(
        "Random rectangular holes in the image (coarse dropout).", label="Coarse dropout"))
    cache_images: bool = field(default=False, metadata=meta(
        "Keep decoded images in RAM after the first epoch (faster, costs memory).",
        label="Cache in RAM", advanced=True))


@dataclass
class TrainingConfig:
    variant: str = field(default="b4", metadata=meta(
        "SegFormer size: b0 (3.7 M parameters) to b5 (85 M). Bigger is slower and needs more VRAM.",
        choices=VARIANTS, label="Model"))
    pretrained: str = field(default="auto", metadata=meta(
        "Where initial weights come from: 'auto' (HF Hub when online, else from scratch), 'hub' (must "
        "download), 'scratch' (random init), or a local folder / .safetensors file.", label="Pretrained"))
    batch_size: int = field(default=8, metadata=meta(
        "Images per step on each device. The main driver of VRAM use.", min=1, max=1024, label="Batch size"))
    accumulate_grad_batches: int = field(default=1, metadata=meta(
        "Steps whose gradients are summed before one optimiser update; effective batch = batch x this.",
        min=1, max=256, label="Gradient accumulation"))
    epochs: int = field(default=100, metadata=meta(
        "Passes over the training set.", min=1, max=10000, label="Epochs"))
    lr: float = field(default=3e-4, metadata=meta(
        "Initial learning rate of AdamW.", min=1e-7, max=1.0, label="Learning rate"))
    weight_decay: float = field(default=1e-2, metadata=meta(
        "AdamW weight decay.", min=0.0, max=1.0, label="Weight decay", advanced=True))
    use_scheduler: bool = field(default=True, metadata=meta(
        "Decay the learning rate (by 10x at half the epochs).", label="LR scheduler"))
    num_workers: int = field(default=4, metadata=meta(
        "Data-loading processes. 0 loads on the training thread (use 0 on Windows if workers fail).",
        min=0, max=64, label="Workers"))
    precision: str = field(default="auto", metadata=meta(
        "'auto' picks bf16 where the GPU supports it, fp16 with loss scaling on older GPUs, fp32 on CPU.",
        choices=PRECISIONS, label="Precision"))
    accelerator: str = field(default="auto", metadata=meta(
        "Device kind: 'auto' uses the GPU when PyTorch sees one.", choices=ACCELERATORS, label="Device"))
    devices: int = field(default=1, metadata=meta(
        "Number of GPUs (more than one runs DDP in a child process).", min=1, max=64, label="GPUs"))
    gpus: list[str] = field(default_factory=list, metadata=meta(
        "Which GPUs to train on: CUDA indices ('0', '1') or UUIDs ('GPU-…', as the Hardware page and "
        "medseg hardware show them). Empty: the card(s) with the most free memory, as the recommendation "
        "chose. When set, it also decides how many GPUs train (the GPUs count follows it).",
        label="GPUs to use", advanced=True))
    sync_batchnorm: bool = field(default=False, metadata=meta(
        "On several GPUs, normalise with the statistics of the whole batch across GPUs, so N GPUs at "
        "batch B train exactly like one GPU at batch N x B (two tiny transfers a step). Off: each GPU "
        "normalises its own batch, as plain DDP does.",
        label="Sync BatchNorm", advanced=True))
    compile: str = field(default="auto", metadata=meta(
        "torch.compile (fused kernels): 'auto' on a CUDA GPU when the run is long enough to pay back "
        "its one- to two-minute first warm-up.", choices=COMPILE_MODES, label="Compile", advanced=True))
    cuda_graphs: str = field(default="auto", metadata=meta(
        "Replay the whole training step as one CUDA graph (a few warm-up steps, then far less CPU "
        "work per step): 'auto' on CUDA GPUs, in any precision, with or without gradient accumulation.",
        choices=COMPILE_MODES, label="CUDA graphs", advanced=True))
    channels_last: bool = field(default=True, metadata=meta(
        "Channels-last memory layout on CUDA (faster convolutions).", label="Channels last", advanced=True))
    dice_include_background: bool = field(default=True, metadata=meta(
        "Count the background class in the Dice loss (on by default).", label="Dice on background",
        advanced=True))
    max_steps_per_epoch: int = field(default=0, metadata=meta(
        "Cap on training batches per epoch for quick checks; 0 means the whole training set.",
        min=0, max=10_000_000, label="Steps per epoch cap", advanced=True))
    seed: int = field(default=42, metadata=meta(
        "Random seed for splits, augmentation and initialisation.", min=0, max=2**31 - 1, label="Seed",
        advanced=True))
    output_dir: str = field(default="runs", metadata=meta(
        "Folder that receives one sub-folder per training run.", label="Output folder"))


@dataclass
class RunConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunConfig":
        """Build from plain data, rejecting unknown sections/keys and wrong types with named fields."""
        config, problems = parse(data)
        if problems:
            raise ConfigError(problems, source)
        return config

    def copy(self) -> "RunConfig":
        return RunConfig.from_dict(self.to_dict())


SECTIONS: dict[str, type] = {"dataset": DatasetConfig, "training": TrainingConfig}


@dataclass(frozen=True)
class ConfigProblem:
    field: str  # dotted path, e.g. "training.batch_size"
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class ConfigError(ValueError):
    """Every problem found in a configuration, each naming its field, so the user fixes all at once."""

    def __init__(self, problems: list[ConfigProblem], source: str = "config"):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


def _type_name(tp: Any) -> str:
    return {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
            "list[str]": "a list of text"}.get(str(tp), str(tp))


def _coerce(value: Any, tp: str) -> Any:
    """Accept TOML/JSON values of the field's type; ints are fine where floats are expected."""
    if tp == "bool":
        if isinstance(value, bool):
            return value
    elif tp == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp == "str":
        if isinstance(value, str):
            return value
    elif tp == "list[str]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    raise TypeError


def parse(data: Any) -> tuple[RunConfig, list[ConfigProblem]]:
    """Plain data → the config it describes plus the problems met on the way (unknown sections or
    settings, wrong types). A setting that cannot be read keeps its default, so the rest can still be
    range-checked: the user then sees every problem at once instead of fixing them one run at a time."""
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        return RunConfig(), [ConfigProblem("", "the file must hold [dataset] and [training] tables")]
    for key in data:
        if key not in SECTIONS:
            problems.append(ConfigProblem(key, f"unknown section; expected one of {', '.join(SECTIONS)}"))
    parts = {}
    for name, section_cls in SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(name, "must be a table of settings"))
            raw = {}
        parts[name], section_problems = _section_from_dict(section_cls, raw, name)
        problems.extend(section_problems)
    return RunConfig(**parts), problems


def problems_in(data: Any) -> list[ConfigProblem]:
    """Every problem of a config given as plain data (a parsed TOML file, a form's values): type errors
    together with out-of-range values, each naming its dotted field. Checks that read a setting which
    could not be parsed are skipped, so no problem is reported about a default the user never chose."""
    config, problems = parse(data)
    unread = {p.field for p in problems}
    for name, section_cls in SECTIONS.items():
        if name in unread or "" in unread:  # the whole section could not be read
            unread |= {f"{name}.{f.name}" for f in dataclasses.fields(section_cls)}
    return problems + validate(config, skip=frozenset(unread))


def _section_from_dict(section_cls: type, raw: dict[str, Any], prefix: str):
    problems: list[ConfigProblem] = []
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(ConfigProblem(f"{prefix}.{key}", "unknown setting (misspelled?)"))
            continue
        tp = str(fields[key].type)
        try:
            values[key] = _coerce(value, tp)
        except TypeError:
            problems.append(ConfigProblem(f"{prefix}.{key}", f"must be {_type_name(tp)}, got {value!r}"))
    return section_cls(**values), problems


def validate(config: RunConfig, skip: frozenset[str] = frozenset()) -> list[ConfigProblem]:
    """All problems with a configuration (empty list: it can be started).

    ``skip``: dotted fields whose value is not the user's (it could not be parsed); checks reading them
    are left out. NaN and infinity are refused for every float: NaN passes every ``<``/``>`` range test,
    so without this check ``lr = nan`` would start a run that learns nothing.
    """
    problems: list[ConfigProblem] = []
    for name in SECTIONS:
        section = getattr(config, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            m = f.metadata
            where = f"{name}.{f.name}"
            if where in skip:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(ConfigProblem(where, f"must be a finite number, got {value}"))
                continue
            if m.get("min") is not None and isinstance(value, (int, float)) and value < m["min"]:
                problems.append(ConfigProblem(where, f"{value} is below the minimum {m['min']:g}"))
            if m.get("max") is not None and isinstance(value, (int, float)) and value > m["max"]:
                problems.append(ConfigProblem(where, f"{value} is above the maximum {m['max']:g}"))
            if m.get("choices") and value not in m["choices"]:
                problems.append(ConfigProblem(where, f"{value!r} is not one of {', '.join(m['choices'])}"))
    ds, tr = config.dataset, config.training
    if not skip & {"dataset.class_names", "dataset.num_classes"} and len(ds.class_names) != ds.num_classes:
        problems.append(ConfigProblem("dataset.class_names",
                                      f"{len(ds.class_names)} names for {ds.num_classes} classes"))
    if not skip & {"dataset.class_colors", "dataset.num_classes"} and len(ds.class_colors) != ds.num_classes:
        problems.append(ConfigProblem("dataset.class_colors",
                                      f"{len(ds.class_colors)} colours for {ds.num_classes} classes"))
    for i, colour in enumerate(ds.class_colors if "dataset.class_colors" not in skip else []):
        if not _is_hex_colour(colour):
            problems.append(ConfigProblem("dataset.class_colors", f"item {i + 1} {colour!r} is not #rrggbb"))
    if "dataset.path" not in skip and not ds.path.strip():
        problems.append(ConfigProblem("dataset.path", "is empty; choose a folder or 'demo'"))
    if ("training.pretrained" not in skip and tr.pretrained not in PRETRAINED_CHOICES
            and not Path(tr.pretrained).expanduser().exists()):
        problems.append(ConfigProblem("training.pretrained",
                                      f"{tr.pretrained!r} is neither auto/hub/scratch nor an existing path"))
    if "training.output_dir" not in skip and not tr.output_dir.strip():
        problems.append(ConfigProblem("training.output_dir", "is empty"))
    return problems


def _is_hex_colour(text: str) -> bool:
    return len(text) == 7 and text[0] == "#" and all(c in "0123456789abcdefABCDEF" for c in text[1:])


def colours_for(num_classes: int) -> list[str]:
    """Default colours for a class count (cycles past the palette)."""
    return [CLASS_PALETTE[i % len(CLASS_PALETTE)] for i in range(num_classes)]


def set_num_classes(config: RunConfig, num_classes: int, names: list[str] | None = None) -> None:
    """Change the class count and keep names/colours consistent with it."""
    ds = config.dataset
    ds.num_classes = num_classes
    if names is not None:
        ds.class_names = list(names)
    elif len(ds.class_names) != num_classes:
        ds.class_names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    if len(ds.class_colors) != num_classes:
        ds.class_colors = colours_for(num_classes)


def to_toml(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(config.to_dict())


def save(config: RunConfig, path: str | Path) -> Path:
    """Write TOML atomically so a crash never leaves a half-written config."""
    return atomic_write_text(Path(path), to_toml(config))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("", "file not found")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", f"cannot be read: {exc}")], str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"is not valid TOML: {exc}")], str(path)) from None


def load(path: str | Path) -> RunConfig:
    """Read a TOML file; a setting that cannot be read raises ConfigError naming the file and listing
    every problem of the file (out-of-range values too), so one attempt shows all there is to fix."""
    path = Path(path)
    data = _read_toml(path)
    config, problems = parse(data)
    if problems:
        raise ConfigError(problems_in(data), str(path))
    return config


def problems_in_file(path: str | Path) -> list[ConfigProblem]:
    """Every problem of a TOML config file (unreadable file, wrong types, out-of-range values) at once."""
    try:
        data = _read_toml(Path(path))
    except ConfigError as exc:
        return exc.problems
    return problems_in(data)


def load_and_validate(path: str | Path) -> RunConfig:
    """The config of a TOML file, or ConfigError listing every problem (types and ranges together)."""
    problems = problems_in_file(path)
    if problems:
        raise ConfigError(problems, str(path))
    return load(path)


def field_specs(section: str) -> list[dataclasses.Field]:
    """The fields of one section, in display order, for generated forms."""
    return list(dataclasses.fields(SECTIONS[section]))


def field_spec(dotted: str) -> dataclasses.Field:
    """The field of 'section.name', so the command line reads a setting's choices, default and help
    from the one place the form and the validator read them."""
    section, _, name = dotted.partition(".")
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)


def choices_of(dotted: str) -> tuple[str, ...]:
    """The valid values of a setting with a fixed list (e.g. 'training.precision')."""
    choices = field_spec(dotted).metadata["choices"]
    if not choices:
        raise KeyError(f"{dotted} has no fixed list of values")
    return choices


def diff(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (a value, b value) where the two configs differ."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in SECTIONS:
        for f in dataclasses.fields(SECTIONS[name]):
            va, vb = getattr(getattr(a, name), f.name), getattr(getattr(b, name), f.name)
            if va != vb:
                out[f"{name}.{f.name}"] = (va, vb)
    return out


def set_value(config: RunConfig, dotted: str, value: Any) -> None:
    """Set 'section.field' with type checking (used by CLI overrides and the form)."""
    section, _, name = dotted.partition(".")
    if section not in SECTIONS:
        raise ConfigError([ConfigProblem(dotted, "unknown section")])
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    if name not in fields:
        raise ConfigError([ConfigProblem(dotted, "unknown setting")])
    tp = str(fields[name].type)
    try:
        setattr(getattr(config, section), name, _coerce(value, tp))
    except TypeError:
        raise ConfigError([ConfigProblem(dotted, f"must be {_type_name(tp)}, got {value!r}")]) from None
