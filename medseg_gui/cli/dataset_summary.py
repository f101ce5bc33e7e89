"""Turn a dataset folder into the small summary the recommendation needs."""

from __future__ import annotations

from medseg_gui.core.data.summary import DatasetSummary


def summarize_for_recommendation(path: str) -> tuple[DatasetSummary | None, str | None]:
    """(summary, None) or (None, problem text). Uses the data layer's validation report."""
    from medseg_gui.core.data.validate import summary_for_recommendation

    return summary_for_recommendation(path)
