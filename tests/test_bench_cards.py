"""The cards benchmark's orchestration on the CPU (benchmarks/bench_cards.py --dry-run: real plans and
reference rows, fake workers with invented speeds) and the graphed fit proof's CPU dry run.

The GPU runs themselves need CUDA; these tests keep a typo, a wrong key or a broken queue from costing
scarce device minutes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_cards  # noqa: E402


def _dry(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "cards.json"
    bench_cards.main(["--dry-run", "--out", str(out), "--data", str(tmp_path / "data"), *extra])
    return json.loads(out.read_text())


def test_reference_rows_are_the_tier_table_per_card():
    rows = {c: bench_cards.row_text(bench_cards.reference_row(c)) for c in bench_cards.CARDS}
    assert rows[4] == "b0 . 2 x4 . 224"
    assert rows[6] == rows[8] == "b2 . 4 . 256"
    assert rows[12] == "b4 . 8 . 288"
    assert {rows[c] for c in (16, 24, 48, 80)} == {"b5 . 32 . 288"}


def test_dry_run_pairs_both_sides_per_card_over_two_gpu_queues(tmp_path):
    doc = _dry(tmp_path, "--cards", "4,16,24", "--gpus", "0,1")
    assert doc["dry_run"] is True and doc["compile"] == "off" and "compile OFF" in doc["note"]
    assert sorted((r["card_gb"], r["side"]) for r in doc["raw"]) == [
        (c, s) for c in (4.0, 16.0, 24.0) for s in ("ours", "reference")]
    assert {r["gpu_index"] for r in doc["raw"]} <= {"0", "1"}
    # the reference is transformers' own SegFormer; ours the app's default model path
    assert {r["side"]: r["fast_path_env"] for r in doc["raw"]} == {"reference": "off", "ours": "default"}
    by = {e["card_gb"]: e for e in doc["results"]}
    four = by[4.0]
    assert four["speedup"] == pytest.approx(four["ours"]["images_per_s"] / four["reference"]["images_per_s"])
    assert four["epoch_s_ours"] == pytest.approx(doc["epoch_slices"] / four["ours"]["images_per_s"])
    # the fake reference OOMs where the memory model says b5 . 32 . 288 fp16 needs more than the card
    assert by[16.0]["oom"] is True and by[16.0]["speedup"] is None and by[16.0]["reference"]["oom"] is True
    assert by[24.0].get("oom") is None and by[24.0]["speedup"] > 0


def test_peak_check_reads_one_predicted_peak_and_flags_the_gaps(tmp_path):
    doc = _dry(tmp_path, "--cards", "4,80")
    by = {e["card_gb"]: e for e in doc["results"]}
    pc = by[4.0]["peak_check"]
    assert pc["one_predicted_peak"] is True
    assert pc["plan_predicted_gb"] == by[4.0]["ours"]["predicted_peak_gb"]
    assert pc["gap_gb"] == pytest.approx(pc["run_predicted_gb"] - pc["real_peak_gb"])
    ours = dict(by[80.0]["ours"], runstarted_predicted_peak_gb=10.0, measured_peak_gb=12.0)
    flags = bench_cards.peak_check(80.0, ours)["flags"]
    assert any("different peaks" in f for f in flags) and any("above the run's prediction" in f for f in flags)
    assert any("unused" in f for f in flags)
    # a real peak the prediction meets to the shown 0.01 GB is not "above" it
    close = dict(by[80.0]["ours"], predicted_peak_gb=10.0, runstarted_predicted_peak_gb=10.0, measured_peak_gb=10.004)
    assert not any("above" in f for f in bench_cards.peak_check(80.0, close)["flags"])


def test_a_case_past_its_timeout_is_killed_and_recorded(tmp_path):
    doc = _dry(tmp_path, "--cards", "4", "--case-timeout", "3", "--fake-sleep", "120")
    assert [r["error"] for r in doc["raw"]] == ["timed out after 3 s"] * 2
    assert doc["results"][0]["speedup"] is None


def test_no_case_starts_once_the_budget_is_spent(tmp_path):
    doc = _dry(tmp_path, "--cards", "4,8", "--budget-s", "0")
    assert len(doc["raw"]) == 4 and all("skipped" in r for r in doc["raw"])


def test_bad_cards_are_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="at least 2 GB"):
        bench_cards.main(["--dry-run", "--out", str(tmp_path / "x.json"), "--cards", "1"])
    with pytest.raises(SystemExit, match="separated by commas"):
        bench_cards.main(["--dry-run", "--out", str(tmp_path / "x.json"), "--cards", "four"])


FIT_DOC = {"time": "t", "results": [
    {"card_gb": 4.0, "variant": "b0", "batch": 12, "accumulate": 1, "image_size": 224, "precision": "bf16-mixed",
     "cuda_graphs": "auto", "graph_captured": True, "predicted_peak_gb": 3.2, "measured_peak_gb": 3.0,
     "finished": True, "oom_recoveries": 0, "gpu": "NVIDIA H200"},
    {"card_gb": 16.0, "variant": "b5", "batch": 23, "accumulate": 2, "image_size": 288, "precision": "bf16-mixed",
     "cuda_graphs": "auto", "graph_captured": False, "predicted_peak_gb": 14.6, "measured_peak_gb": 15.5,
     "finished": True, "oom_recoveries": 1, "gpu": "NVIDIA H200"},
    {"card_gb": 80.0, "error": "timed out"}]}


def test_tables_render_from_the_results_into_the_doc_between_its_markers(tmp_path):
    doc = _dry(tmp_path, "--cards", "4,16")
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(FIT_DOC))
    md = tmp_path / "speed.md"
    md.write_text(f"# Title\n\nkept above\n\n{bench_cards.BEGIN}\nold table\n{bench_cards.END}\n\nkept below\n")
    bench_cards.main(["--table", "--out", str(tmp_path / "cards.json"), "--fit", str(fit), "--doc", str(md)])
    text = md.read_text()
    assert "kept above" in text and "kept below" in text and "old table" not in text
    assert "DRY RUN" in text
    assert "| 4 GB | b0 . 2 x4 . 224 |" in text and "n/a (reference OOM)" in text
    four = next(e for e in doc["results"] if e["card_gb"] == 4.0)
    assert f"{four['speedup']:.2f}x" in text
    assert "| 4 GB | b0 . 12 . 224 | bf16-mixed | graph |" in text
    assert "b5 . 23 x2 . 288" in text and "no graph" in text and "OOM x1" in text and "failed: timed out" in text


def test_compile_on_is_recorded_and_never_mixed_with_compile_off_results(tmp_path):
    """--compile on measures a long run's defaults; its results name it and stay in their own file."""
    out = tmp_path / "cards_compiled.json"
    bench_cards.main(["--dry-run", "--compile", "on", "--cards", "4", "--out", str(out), "--data", str(tmp_path / "d")])
    doc = json.loads(out.read_text())
    assert doc["compile"] == "on" and "compile ON" in doc["note"] and "compile OFF" not in doc["note"]
    with pytest.raises(SystemExit, match="do not mix"):
        bench_cards.main(["--dry-run", "--append", "--cards", "8", "--out", str(out), "--data", str(tmp_path / "d")])
    assert json.loads(out.read_text()) == doc
    assert bench_cards._graph_words({"graph_planned": True, "graph_captured": True, "compiled": True}) == "graph + compile"


def test_a_missing_doc_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        bench_cards.write_doc(tmp_path / "missing.md", "table")


def test_doc_without_markers_is_refused_untouched(tmp_path):
    md = tmp_path / "speed.md"
    md.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="markers are missing"):
        bench_cards.write_doc(md, "table")
    assert md.read_text() == "# no markers\n"


def test_fit_dry_run_plans_graphed_bf16_and_builds_the_repeated_loader(tmp_path):
    from medseg_gui.core.data.demo import generate_demo

    import bench_fit

    data = generate_demo(tmp_path / "demo", n=12, size=64)
    plans = bench_fit.dry_run([4.0, 16.0], str(data), graphed=True, steps=5)
    assert [p["precision"] for p in plans] == ["bf16-mixed"] * 2
    assert plans[0]["graph_planned"] is True and plans[0]["compile"] == "off"
    assert all(p["train_batches"] >= 5 for p in plans)
    # validation runs at least one full batch (its activations sit beside the graph's pool)
    assert all(p["val_images"] >= p["batch"] for p in plans)
    what_if = bench_fit.dry_run([4.0], str(data), graphed=False, steps=5)
    assert what_if[0]["precision"] == "16-mixed"  # the first proof's what-if plan: no card to ask


# ----- the GPU workers' glue on the CPU: CUDA-only parts (the cap, the peaks) stubbed -------------
@pytest.fixture
def cpu_worker(tmp_path, monkeypatch, one_torch_thread):
    """bench_cards' workers with the CUDA-only calls replaced, on a tiny demo set at 64 px."""
    import tempfile

    import torch

    from medseg_gui.core.data.demo import generate_demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the session's output folder
    generate_demo(tmp_path / "data" / "demo64", n=12, size=64)
    monkeypatch.setattr(bench_cards, "cap_process", lambda card: {"context_model_gib": 1.5, "context_measured_gib": None})
    monkeypatch.setattr(bench_cards, "_peaks", lambda ctx: {"measured_peak_gb": 2.0, **ctx})
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 6))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    return tmp_path / "data"


def test_ours_worker_records_the_plan_the_run_and_the_timed_steps(cpu_worker, monkeypatch):
    real_plan = bench_cards.plan_for_card

    def small_cpu_plan(card, capability, base):
        rec = real_plan(card, capability, base)
        tr = rec.config.training
        tr.accelerator, tr.precision, tr.variant, tr.batch_size, tr.accumulate_grad_batches = "cpu", "32", "b0", 2, 1
        rec.config.dataset.image_size = 64
        return rec

    monkeypatch.setattr(bench_cards, "plan_for_card", small_cpu_plan)
    out = bench_cards.ours_worker(4.0, cpu_worker, steps=3, warm=2, workers=0)
    assert out["finished"] is True and out["oom"] is False and "error" not in out
    assert out["steps_timed"] == 3 and out["images_per_s"] > 0
    assert out["variant"] == "b0" and out["graph_captured"] is False and out["compile"] == "off"
    assert out["measured_peak_gb"] == 2.0 and "runstarted_predicted_peak_gb" in out


def test_reference_worker_runs_the_row_with_accumulation_and_records_an_oom(cpu_worker, monkeypatch):
    import torch

    real_row = bench_cards.reference_row
    monkeypatch.setattr(bench_cards, "reference_row", lambda card: dict(real_row(card), image_size=64))
    out = bench_cards.reference_worker(4.0, cpu_worker, steps=3, warm=2, workers=0)
    assert (out["variant"], out["batch"], out["accumulate"], out["oom"]) == ("b0", 2, 4, False)
    assert out["steps_timed"] == 3 and out["images_per_s"] > 0

    import bench_train_speed

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bench_train_speed, "run_reference", out_of_memory)
    oom = bench_cards.reference_worker(16.0, cpu_worker, steps=3, warm=2, workers=0)
    assert oom["oom"] is True and oom["error"].startswith("out of memory") and "images_per_s" not in oom


def test_append_keeps_the_other_cards_and_an_existing_file_is_never_replaced_silently(tmp_path):
    """One GPU runs the grid in two commands into one file; measured results are not overwritten by accident."""
    out = tmp_path / "cards.json"
    measured = {"benchmark": "cards", "dry_run": False, "runs": [{"cards": [80.0]}],
                "raw": [{"card_gb": 80.0, "side": "reference", "images_per_s": 120.0},
                        {"card_gb": 80.0, "side": "ours", "images_per_s": 360.0, "variant": "b5", "batch": 106,
                         "image_size": 288, "accumulate": 1}]}
    out.write_text(json.dumps(measured))
    with pytest.raises(SystemExit, match="already holds results"):
        bench_cards.main(["--cards", "4", "--out", str(out)])
    with pytest.raises(SystemExit, match="do not mix"):
        bench_cards.main(["--dry-run", "--append", "--cards", "4", "--out", str(out)])
    assert json.loads(out.read_text()) == measured

    dry = tmp_path / "dry.json"
    bench_cards.main(["--dry-run", "--cards", "80", "--out", str(dry)])
    bench_cards.main(["--dry-run", "--append", "--cards", "4", "--out", str(dry)])
    doc = json.loads(dry.read_text())
    assert [e["card_gb"] for e in doc["results"]] == [4.0, 80.0] and len(doc["raw"]) == 4 and len(doc["runs"]) == 2
    assert all(e["speedup"] for e in doc["results"])
    bench_cards.main(["--dry-run", "--cards", "8", "--out", str(dry)])  # a dry run's invented numbers: replaced
    assert [e["card_gb"] for e in json.loads(dry.read_text())["results"]] == [8.0]

    other = tmp_path / "other.json"
    other.write_text('{"benchmark": "fit"}')
    with pytest.raises(SystemExit, match="not a results file of this benchmark"):
        bench_cards.main(["--dry-run", "--force", "--cards", "4", "--out", str(other)])
    assert other.read_text() == '{"benchmark": "fit"}'
