"""The GPU tiers as data: the starting presets the recommendation adjusts.

The common SegFormer training guides name 4 GB, 6-8 GB, 10-12 GB and 16 GB+ cards and leave gaps
(what is a 5, 9 or 14 GB card?). Here the tiers cover every amount of *free* VRAM with half-open
ranges whose lower edges sit a little under the nominal card sizes, because a "10 GB" card shows
~9.7 GiB free on an idle desktop.

This module is the one source of every tier's name and range as the user reads them: the badge, the
recommendation's reasons, the Hardware page's table and the CLI all print ``Tier.label`` /
``Tier.range_text`` (the nominal card sizes those guides speak of are in ``example_gpus``), so they
cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tier:
    name: str
    title: str  # "Entry"; ``label`` adds the range
    min_free_gb: float  # inclusive
    max_free_gb: float  # exclusive (inf for the top tier)
    example_gpus: str
    variant: str
    batch_size: int
    image_size: int
    epochs: int
    lr: float
    use_scheduler: bool
    accumulate_grad_batches: int = 1
    precision: str = "auto"
    quoted_epoch_minutes: str = ""  # what those guides quote for such a card: for comparison only, not measured
    quoted_f1: str = ""

    @property
    def range_text(self) -> str:
        """The free VRAM this tier covers, e.g. "5-9 GB free" (ASCII: it is printed on any console)."""
        if self.min_free_gb <= 0:
            return f"no GPU, or under {self.max_free_gb:g} GB free"
        if math.isinf(self.max_free_gb):
            return f"{self.min_free_gb:g} GB free or more"
        return f"{self.min_free_gb:g}-{self.max_free_gb:g} GB free"

    @property
    def label(self) -> str:
        """"Entry (5-9 GB free)": the name and range everywhere a tier is named."""
        return f"{self.title} ({self.range_text})"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if math.isinf(self.max_free_gb):
            data["max_free_gb"] = None
        data["label"], data["range_text"] = self.label, self.range_text
        return data


TIERS: tuple[Tier, ...] = (
    Tier("cpu", "CPU", 0.0, 1.5, "none, or under 1.5 GB free", "b0", 1, 224, 5, 3e-4,
         False, precision="32", quoted_epoch_minutes="30-40", quoted_f1="0.85-0.88"),
    Tier("low", "Low VRAM", 1.5, 5.0, "GTX 1650, RTX 3050 4GB, MX450", "b0", 2, 224, 50, 2e-4,
         False, accumulate_grad_batches=4, quoted_epoch_minutes="7-10", quoted_f1="0.88-0.91"),
    Tier("entry", "Entry", 5.0, 9.0, "RTX 3050 8GB, RTX 2060, GTX 1660 Ti", "b2", 4, 256, 100,
         3e-4, True, quoted_epoch_minutes="5-7", quoted_f1="0.91-0.93"),
    Tier("mainstream", "Mainstream", 9.0, 15.0, "RTX 3060 12GB, RTX 3080 10GB, RTX 4070", "b4",
         8, 288, 100, 3e-4, True, quoted_epoch_minutes="3-4", quoted_f1="0.93-0.95"),
    Tier("high", "High", 15.0, math.inf, "RTX 4090, A100, RTX 3090, V100", "b5", 32, 288,
         100, 3e-4, True, quoted_epoch_minutes="1-2", quoted_f1="0.94-0.96"),
)

TIERS_BY_NAME = {t.name: t for t in TIERS}


def tier_for_vram(free_gb: float | None) -> Tier:
    """The tier for an amount of free VRAM; None (no GPU) or anything under 1.5 GB is the CPU tier."""
    if free_gb is None or free_gb != free_gb or free_gb < TIERS[1].min_free_gb:
        return TIERS[0]
    for tier in TIERS[1:]:
        if tier.min_free_gb <= free_gb < tier.max_free_gb:
            return tier
    raise AssertionError("tiers must cover every amount")  # pragma: no cover - guarded by tests


def tier_table() -> list[dict[str, Any]]:
    return [t.to_dict() for t in TIERS]
