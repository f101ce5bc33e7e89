"""The one headline score of a segmentation, by name: what every face of the app calls it.

A base module (no imaging, no numpy) because the event stream, the run state and the live metrics
name the score as well as the imaging code that computes it (``core.imaging.seg_metrics``).
Why foreground only: background fills most pixels, so its Dice is near 1 for any model and lifts a
mean that includes it; a clinician judges the organs. The engine's per-epoch score (the events'
``val_f1``/``best_f1`` fields) is this same number.
"""

from __future__ import annotations

#: Named the same in the Training page, the runs list, the Viewer and the CLI.
HEADLINE_METRIC = "mean Dice (foreground classes)"
HEADLINE_SHORT = "mean Dice"  # where space is short (status lines); the tooltip/legend says the rest
