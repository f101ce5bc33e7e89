"""Rules written once and used everywhere: the precision rule, the variant list and the other setting
choices, the class palette, durations, Lightning's silenced advice and the run folder's file names.
Each test checks that the users of a rule follow its one home, so a second copy cannot drift."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from medseg_gui.core import config as cfg
from medseg_gui.core import runs
from medseg_gui.core.hardware import GpuInfo
from medseg_gui.core.planning.precision import precision_for, resolve_precision
from medseg_gui.core.tools import preflight as pf


@pytest.mark.parametrize("requested,on_gpu,bf16,expected", [
    ("auto", False, False, "32"), ("auto", False, True, "32"),
    ("auto", True, True, "bf16-mixed"), ("auto", True, False, "16-mixed"),
    ("16-mixed", False, False, "16-mixed"), ("bf16-mixed", True, False, "bf16-mixed"), ("32", True, True, "32")])
def test_precision_rule(requested, on_gpu, bf16, expected):
    assert precision_for(requested, on_gpu=on_gpu, bf16=bf16) == expected


def test_preflight_and_training_resolve_precision_by_the_same_rule():
    config = cfg.RunConfig()
    assert resolve_precision("auto", "cpu") == precision_for("auto", on_gpu=False, bf16=False) == "32"
    for cc, expected in (((8, 0), "bf16-mixed"), ((7, 5), "16-mixed")):
        gpu = GpuInfo(index=0, name="card", uuid="GPU-1", total_gb=16.0, used_gb=0.0, free_gb=16.0,
                      compute_capability=cc)
        facts = pf.PreflightFacts(config=config, torch_cuda_available=True, gpus=[gpu], gpu=gpu)
        assert pf.resolved_precision(facts) == expected
    facts = pf.PreflightFacts(config=config, torch_cuda_available=False)
    assert pf.resolved_precision(facts) == "32"


def test_the_command_line_offers_exactly_the_config_choices():
    from medseg_gui.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    offered = {a.dest: tuple(a.choices) for a in train._actions if a.choices}
    for flag, dotted in (("variant", "training.variant"), ("precision", "training.precision"),
                         ("accelerator", "training.accelerator")):
        assert offered[flag] == cfg.choices_of(dotted)
    assert cfg.choices_of("training.variant") == cfg.VARIANTS
    with pytest.raises(KeyError, match="no fixed list"):
        cfg.choices_of("training.batch_size")


def test_planning_and_benchmark_use_the_config_variant_order():
    from medseg_gui.core.planning import recommend
    from medseg_gui.core.tools import benchmark

    assert recommend.VARIANTS is cfg.VARIANTS
    assert not hasattr(benchmark, "VARIANT_ORDER")
    # the nearest measured variant to b3 is searched in that order: b2 and b4 tie, the bigger wins
    rows = [{"variant": "b2"}, {"variant": "b4"}]
    assert benchmark._nearest_variant(rows, "b3") == "b4"


def test_one_class_palette_for_config_and_viewer(tmp_path):
    from medseg_gui.core.imaging.viewer_doc import ViewerDocument

    assert cfg.DEFAULT_CLASS_COLORS == list(cfg.CLASS_PALETTE[:4])
    assert cfg.colours_for(14)[:12] == list(cfg.CLASS_PALETTE) and cfg.colours_for(14)[12] == cfg.CLASS_PALETTE[0]
    doc = ViewerDocument()
    doc.class_colors = []
    assert doc._colours() == list(cfg.CLASS_PALETTE)


def test_durations_read_the_same_everywhere():
    from medseg_gui.core.tools.benchmark import TimeEstimate
    from medseg_gui.core.words import format_duration

    est = TimeEstimate(train_images=10, val_images=2, epochs=3, steps_per_epoch=5, train_s_per_epoch=60.0,
                       val_s_per_epoch=5.0, epoch_s=65.0, run_s=3 * 3600.0)
    assert est.text().startswith(format_duration(65.0)) and "3 h 00 min for 3 epochs" in est.text()
    assert format_duration(65) == "1 min 05 s" and format_duration(None) == "—"


def test_lightning_advice_is_silenced_only_inside_the_block():
    from medseg_gui.core.engine.quiet import LOGGERS, TRIAL_LOG_LEVEL, lightning_logs_at, quiet_lightning

    advice = "The 'train_dataloader' does not have many workers which may be a bottleneck."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_lightning():
            warnings.warn(advice, UserWarning)
            warnings.warn("something the user must see", UserWarning)
        warnings.warn(advice, UserWarning)
    assert [str(w.message) for w in caught] == ["something the user must see", advice]

    before = lightning_logs_at(logging.INFO)
    try:
        with quiet_lightning(trial=True):
            assert all(logging.getLogger(n).level == TRIAL_LOG_LEVEL for n in LOGGERS)
        assert all(logging.getLogger(n).level == logging.INFO for n in LOGGERS)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def test_run_folder_names_have_one_spelling(tmp_path):
    from medseg_gui.core.engine import bundle

    best, last = runs.checkpoint_paths(tmp_path)
    assert (best.name, last.name, best.parent.name) == (runs.BEST_CHECKPOINT, runs.LAST_CHECKPOINT,
                                                        runs.CHECKPOINT_DIR)
    assert runs.BUNDLE_META_FILE in bundle.BUNDLE_FILES
    # the files a user or another tool finds on disk keep their documented names
    assert (runs.BEST_CHECKPOINT, runs.LAST_CHECKPOINT, runs.BUNDLE_META_FILE, runs.EVENTS_FILE,
            runs.METRICS_FILE, runs.CONFIG_FILE, runs.BUNDLE_DIR) == (
        "best.ckpt", "last.ckpt", "medseg.json", "events.jsonl", "metrics.csv", "config.toml", "bundle")


def test_no_second_spelling_of_the_run_files_in_the_package():
    root = Path(__file__).resolve().parents[1] / "medseg_gui"
    homes = {root / "core" / "runs.py"}
    literals = ('"last.ckpt"', '"best.ckpt"', '"medseg.json"', '"events.jsonl"', '"metrics.csv"')
    found = [f"{p.relative_to(root)}: {lit}" for p in root.rglob("*.py") if p not in homes
             for lit in literals if lit in p.read_text(encoding="utf-8")]
    assert not found, found
