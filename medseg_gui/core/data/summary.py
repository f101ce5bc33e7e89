"""The few facts about a dataset that planning needs: class count, typical image size, image count.

In the data floor because the data layer produces it (``validate.summary_for_recommendation``) and
planning (``core.planning.recommend``) reads it; planning imports data, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DatasetSummary:
    """What the recommendation needs to know about the user's data (from the validation report)."""
    num_classes: int
    image_size: int | None = None  # typical (median) longer side in pixels
    train_images: int | None = None
    class_names: list[str] | None = None
