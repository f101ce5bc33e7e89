"""The packaged reference throughput: images/s measured on known cards (``calibration/throughput.json``).

Planning reads it to say what a bigger setting costs in time (``recommend``); the benchmark tool
(``core.tools.benchmark``) scales it to this card before anything has been measured here. It lives in
planning, the lower of the two floors, so the recommender never imports a tool.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def _calibration_text() -> str:
    return resources.files("medseg_gui.core.planning").joinpath("calibration/throughput.json").read_text(encoding="utf-8")


def calibration() -> dict[str, Any]:
    """The reference measurements (a JSON data file shipped in the package); a fresh copy per call."""
    return json.loads(_calibration_text())
