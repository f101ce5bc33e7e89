"""The one shared state of the window: configuration, hardware snapshot, recommendation, dataset.

Panels observe its signals and send intents through its methods; they never talk to each other.
The decisions themselves live in ``medseg_gui.core`` — this object only holds the current values,
calls core once per change, and says what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from medseg_gui.core import config as cfg
from medseg_gui.core.config import ConfigProblem, RunConfig
from medseg_gui.core.hardware import HardwareSnapshot
from medseg_gui.core.data.summary import DatasetSummary
from medseg_gui.core.planning.recommend import Recommendation

# Fields of the user's config that the recommendation keeps (what the data decides, not the GPU).
_BASE_FIELDS = ("dataset.path", "dataset.num_classes", "dataset.class_names", "dataset.class_colors",
                "training.gpus",
                "training.output_dir")


def compute_recommendation(snapshot: HardwareSnapshot, *, vram_gb: float | None, base: RunConfig,
                           dataset: DatasetSummary | None, gpu_index: int | None = None) -> Recommendation:
    """The GUI's only call into the recommender, so plugging in the memory model is a one-line change."""
    from medseg_gui.core.planning.recommend import recommend

    return recommend(snapshot, gpu_index=gpu_index, vram_gb=vram_gb, dataset=dataset, base=base,
                     memory_model="default")


def recommendation_base(config: RunConfig) -> RunConfig:
    """Defaults plus the data-related fields of ``config``, so the diff shows every user edit."""
    base = RunConfig()
    for dotted in _BASE_FIELDS:
        section, _, name = dotted.partition(".")
        value = getattr(getattr(config, section), name)
        setattr(getattr(base, section), name, list(value) if isinstance(value, list) else value)
    return base


def _base_key(config: RunConfig) -> tuple:
    return tuple(str(getattr(getattr(config, d.split(".")[0]), d.split(".")[1])) for d in _BASE_FIELDS)


def _rec_key(rec: Recommendation) -> tuple:
    """What a user would see change; the raw free bytes move every second and are not part of it."""
    return (rec.tier.name, str(rec.config.to_dict()), tuple(rec.reasons), tuple(rec.warnings),
            None if rec.free_gb is None else round(rec.free_gb, 1))


KEPT_CHECKS = 8  # recent pre-flight reports remembered (one per configuration)


class AppState(QObject):
    config_changed = Signal(object)          # RunConfig (a private copy; edit through the methods)
    snapshot_changed = Signal(object)        # HardwareSnapshot
    recommendation_changed = Signal(object)  # Recommendation or None
    dataset_changed = Signal(str)            # dataset path or "demo"
    what_if_changed = Signal(object)         # float GB or None (= use the GPU's free memory)
    message = Signal(str)                    # one-line status for the status bar
    preflight_changed = Signal(object)       # the last PreflightReport (every checklist shows it)

    def __init__(self, config: RunConfig | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._config = config.copy() if config is not None else RunConfig()
        # "default" until the user (or a file) sets a config; the first recommendation replaces it.
        self.config_source = "default" if config is None else "given"
        self.snapshot: HardwareSnapshot | None = None
        self.recommendation: Recommendation | None = None
        self.dataset_summary: DatasetSummary | None = None
        self.what_if_vram_gb: float | None = None
        self._rec_key: tuple | None = None
        self._rec_inputs: tuple | None = None
        # the last pre-flight check, with the configuration it was made for (shared: a check on the
        # Training page answers the Tools page's checklist too)
        self.preflight_report: Any = None
        self.preflight_config: dict[str, Any] | None = None
        # a few recent checks, newest last: the wizard checks its own configuration and shares it here
        # before handing that configuration over, so the latest check need not be for ours
        self._preflights: list[tuple[dict[str, Any], Any]] = []
        self._preflight_checked: RunConfig | None = None

    # ----- configuration -------------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        return self._config

    @property
    def dataset_path(self) -> str:
        return self._config.dataset.path

    def set_config(self, config: RunConfig, source: str = "user") -> None:
        old_path = self._config.dataset.path
        self._config = config.copy()
        self.config_source = source
        self.config_changed.emit(self._config)
        if self._config.dataset.path != old_path:
            self.dataset_changed.emit(self._config.dataset.path)
        if self.snapshot is not None:
            self._recommend()

    def edit_config(self, change: Callable[[RunConfig], None], source: str = "user") -> None:
        """Apply ``change`` to a copy and publish it (e.g. ``lambda c: set_num_classes(c, 5)``)."""
        new = self._config.copy()
        change(new)
        self.set_config(new, source)

    def set_value(self, dotted: str, value: Any) -> None:
        """One field from a form widget; a wrong type raises ``ConfigError`` naming the field."""
        self.edit_config(lambda c: cfg.set_value(c, dotted, value))

    def problems(self) -> list[ConfigProblem]:
        """Every problem, including a dataset folder that does not exist on this computer."""
        from medseg_gui.core.config_checks import problems_before_start

        return problems_before_start(self._config)

    def differences(self) -> dict[str, tuple[Any, Any]]:
        """Field -> (current, recommended) where the config departs from the recommendation."""
        if self.recommendation is None:
            return {}
        return cfg.diff(self._config, self.recommendation.config)

    def load_config(self, path: str | Path) -> RunConfig:
        """Read a TOML file into the state; raises ``ConfigError`` (file and fields named) on bad input.

        A file with out-of-range values still loads, so the form can show each problem in place.
        """
        config = cfg.load(path)
        self.set_config(config, source=f"file:{path}")
        self.message.emit(f"Loaded configuration from {path}")
        return config

    def save_config(self, path: str | Path) -> Path:
        written = cfg.save(self._config, path)
        self.message.emit(f"Saved configuration to {written}")
        return written

    # ----- pre-flight ----------------------------------------------------------------------------
    def set_preflight(self, report: Any, config: RunConfig) -> None:
        """Share a finished pre-flight check; ``preflight_for`` answers only for that configuration."""
        self.preflight_report, self.preflight_config = report, config.to_dict()
        self._preflight_checked = config.copy()
        self._preflights = [(c, r) for c, r in self._preflights if c != self.preflight_config][-(KEPT_CHECKS - 1):]
        self._preflights.append((self.preflight_config, report))
        self.preflight_changed.emit(report)

    def preflight_for(self, config: RunConfig) -> Any:
        """The newest check made for exactly ``config`` (any checklist's, the wizard's too), else None."""
        wanted = config.to_dict()
        for checked, report in reversed(self._preflights):
            if checked == wanted:
                return report
        return None

    def share_preflight_with(self, other: AppState) -> None:
        """Pass every check made here on to ``other`` (the wizard's own state -> the main window's),
        so the Tools checklist shows the wizard's check instead of "Not checked yet"."""
        self.preflight_changed.connect(
            lambda report: other.set_preflight(report, self._preflight_checked)
            if report is self.preflight_report and self._preflight_checked is not None else None)

    # ----- dataset -------------------------------------------------------------------------------
    def set_dataset(self, path: str, summary: DatasetSummary | None = None) -> None:
        """Point the config at a dataset; ``summary`` (from the data layer) refines the recommendation."""
        self.dataset_summary = summary
        self._rec_inputs = None  # the summary may differ even when the path does not
        self.edit_config(lambda c: setattr(c.dataset, "path", str(path)),
                         source=self.config_source if self.config_source != "default" else "default")

    # ----- hardware and recommendation -----------------------------------------------------------
    def set_snapshot(self, snapshot: HardwareSnapshot) -> None:
        self.snapshot = snapshot
        self.snapshot_changed.emit(snapshot)
        self._recommend()

    def set_what_if(self, vram_gb: float | None) -> None:
        """Plan for a card with ``vram_gb`` free (None: the selected GPU's real free memory)."""
        if vram_gb == self.what_if_vram_gb:
            return
        self.what_if_vram_gb = vram_gb
        self.what_if_changed.emit(vram_gb)
        self._recommend()

    def use_recommendation(self) -> bool:
        """Adopt the current recommendation as the config (the "Use this configuration" intent)."""
        if self.recommendation is None:
            return False
        self.set_config(self.recommendation.config, source="recommended")
        self.message.emit(f"Using the recommended configuration ({self.recommendation.tier.label})")
        return True

    def set_training_gpus(self, gpus: list[str]) -> None:
        """The GPUs ticked on the Hardware page (UUIDs; empty: the card with the most free memory).

        training.devices follows the count. A configuration that still is the recommendation keeps
        following it (re-planned for the new cards); one the user has edited keeps the edits and
        shows the differences.
        """
        def change(c: RunConfig) -> None:
            c.training.gpus = list(gpus)
            c.training.devices = max(1, len(gpus))
        follow = self.config_source == "default" or (self.recommendation is not None and not self.differences())
        self.edit_config(change, source="default" if follow else "user")

    def _recommend(self) -> None:
        if self.snapshot is None:
            return
        from medseg_gui.core.gpu_identity import GpuSelectionError, choose_gpus

        base = recommendation_base(self._config)
        chosen, missing = [], None
        if self.what_if_vram_gb is None:
            try:
                chosen = choose_gpus(self.snapshot, base.training.gpus, 1)
            except GpuSelectionError as exc:  # a chosen card is gone: plan for the most free one, and say so
                missing, base.training.gpus = str(exc), []
                chosen = choose_gpus(self.snapshot, (), 1)
        inputs = (_base_key(self._config), self.what_if_vram_gb,
                  tuple((g.uuid, g.cuda_index, None if g.free_gb is None else round(g.free_gb, 1)) for g in chosen),
                  len(self.snapshot.gpus))
        if inputs == self._rec_inputs:
            return
        self._rec_inputs = inputs
        rec = compute_recommendation(self.snapshot, vram_gb=self.what_if_vram_gb, base=base,
                                     dataset=self.dataset_summary)
        if missing:
            rec.warnings.insert(0, f"A GPU chosen in the configuration is not available: {missing}. "
                                   "Planned for the card with the most free memory instead; tick the GPUs to use "
                                   "on this page.")
        key = _rec_key(rec)
        if key == self._rec_key:
            return
        self._rec_key = key
        self.recommendation = rec
        self.recommendation_changed.emit(rec)
        if self.config_source == "default":
            # Nothing chosen yet: start from what fits this machine rather than from bare defaults.
            self.set_config(rec.config, source="recommended")
