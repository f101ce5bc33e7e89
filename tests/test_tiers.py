import math

import pytest

from medseg_gui.core.planning.tiers import TIERS, tier_for_vram, tier_table


@pytest.mark.parametrize("gb, name", [
    (None, "cpu"), (0, "cpu"), (1.49, "cpu"), (1.5, "low"), (3.7, "low"), (4, "low"), (4.99, "low"),
    (5, "entry"), (6, "entry"), (8, "entry"), (8.99, "entry"), (9, "mainstream"), (10, "mainstream"),
    (12, "mainstream"), (14, "mainstream"), (14.99, "mainstream"), (15, "high"), (16, "high"),
    (24, "high"), (80, "high"), (141, "high"), (float("nan"), "cpu"),
])
def test_every_amount_maps_to_a_tier(gb, name):
    assert tier_for_vram(gb).name == name


def test_tiers_are_contiguous_and_cover_zero_to_infinity():
    assert TIERS[0].min_free_gb == 0
    for lower, upper in zip(TIERS, TIERS[1:]):
        assert lower.max_free_gb == upper.min_free_gb
    assert math.isinf(TIERS[-1].max_free_gb)


def test_tiers_hold_the_documented_presets():
    by = {t.name: t for t in TIERS}
    assert (by["high"].variant, by["high"].batch_size, by["high"].image_size) == ("b5", 32, 288)
    assert (by["mainstream"].variant, by["mainstream"].batch_size, by["mainstream"].image_size) == ("b4", 8, 288)
    assert (by["entry"].variant, by["entry"].batch_size, by["entry"].image_size) == ("b2", 4, 256)
    low = by["low"]
    assert (low.variant, low.batch_size, low.image_size, low.accumulate_grad_batches, low.epochs, low.lr,
            low.use_scheduler) == ("b0", 2, 224, 4, 50, 2e-4, False)
    assert (by["cpu"].batch_size, by["cpu"].epochs, by["cpu"].precision) == (1, 5, "32")


def test_tier_table_is_json_safe():
    import json

    data = json.loads(json.dumps(tier_table()))
    assert data[-1]["max_free_gb"] is None and len(data) == len(TIERS)


def test_names_and_ranges_come_from_one_place():
    """Badge, reasons, table and CLI print Tier.label; its range is computed from the edges."""
    by = {t.name: t for t in TIERS}
    assert by["entry"].label == "Entry (5-9 GB free)"
    assert by["high"].label == "High (15 GB free or more)"
    assert by["cpu"].label == "CPU (no GPU, or under 1.5 GB free)"
    for tier in TIERS:
        assert tier.label == f"{tier.title} ({tier.range_text})"
        assert tier.label.isascii()  # printed on any console
    data = tier_table()
    assert data[2]["label"] == by["entry"].label and data[2]["range_text"] == "5-9 GB free"
