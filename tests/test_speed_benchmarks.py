"""The GPU speed scripts run end to end in their tiny CPU modes, so a GPU run cannot die of a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_train_speed  # noqa: E402
import profile_step  # noqa: E402


def test_profile_dry_run_splits_both_paths_by_part(tmp_path):
    out = tmp_path / "profile.json"
    assert profile_step.main(["--dry-run", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    fast, hf = doc["runs"]["fast"], doc["runs"]["hf"]
    assert fast["fast_path"] is True and hf["fast_path"] is False
    for run in (fast, hf):
        parts = run["parts"]
        for part in (profile_step.PATCH, profile_step.ATTENTION, profile_step.FFN, profile_step.NORMS,
                     profile_step.HEAD, profile_step.LOSS, profile_step.OPTIMIZER):
            assert parts[part]["total_ms"] > 0, part
        for part in (profile_step.ATTENTION, profile_step.FFN, profile_step.HEAD, profile_step.LOSS):
            assert parts[part]["backward_ms"] > 0, part  # backward ranges are attributed too
        assert abs(sum(p["share"] for p in parts.values()) - 1) < 0.01
        assert run["top_kernels"] and run["step_ms_unprofiled"] > 0
    assert set(doc["fast_path_saves_ms"]) >= {profile_step.HEAD}
    eq = doc["equivalence"]
    assert eq["fp32_max_abs_diff"] < 1e-5 and eq["fp32_grad_max_abs_diff_rel_to_max_grad"] < 1e-4


def test_profile_dry_run_compiled_path_is_split_by_kind_of_kernel(tmp_path):
    out = tmp_path / "profile.json"
    assert profile_step.main(["--dry-run", "--paths", "compiled", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    run = doc["runs"]["compiled"]
    assert "parts" not in run and run["kernel_kinds"] and run["compile_and_warmup_s"] > 0
    assert abs(sum(k["share"] for k in run["kernel_kinds"].values()) - 1) < 0.01
    flops = doc["flops_per_step"]
    assert flops["matrix multiply"] > 0 and flops["convolution"] > 0
    assert flops["total"] >= flops["matrix multiply"] + flops["convolution"]
    assert run["step_tflops_per_s_unprofiled"] > 0 and doc["case"]["compile"] is True


@pytest.mark.parametrize("name, kind", [
    ("nvjet_sm90_tst_112x128_64x7_1x2_h_bz_bias_TNN", "matrix multiply"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x64", "attention"),
    ("dgrad2d_c1_k1_nhwc_specialized", "convolution"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
    ("triton_per_fused_add_native_layer_norm_12", "compiler-fused (Triton)"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata<4>>",
     "optimizer"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, false>", "normalisation"),
    ("void at::native::reduce_kernel<128, 4, at::native::ReduceOp<c10::BFloat16, sum_functor>>", "reductions"),
    ("Memset (Device)", "other"),
])
def test_kernels_are_sorted_into_kinds_by_name(name, kind):
    assert profile_step.kernel_kind(name) == kind


def test_impl_names_map_to_settings_and_environment():
    split = bench_train_speed.split_impl
    assert split("ours-compiled-warm-regional") == ("ours-compiled-warm", ("-regional",))
    assert split("ours-graphs-nocl-hf") == ("ours-graphs", ("-hf", "-nocl"))
    assert bench_train_speed.impl_settings("ours-graphs-nocl-hf") == ("off", "on", False)
    assert bench_train_speed.impl_env("ours-compiled-hf") == {"MEDSEG_FAST_PATH": "off",
                                                              "MEDSEG_COMPILE_SCOPE": "whole",
                                                              "MEDSEG_UPSAMPLE_GRAD": "pytorch"}
    assert bench_train_speed.impl_env("ours-compiled-regional")["MEDSEG_COMPILE_SCOPE"] == "regional"
    assert split("ours-compiled-regional-mmup") == ("ours-compiled", ("-mmup", "-regional"))
    assert bench_train_speed.impl_env("ours-compiled-regional-mmup")["MEDSEG_UPSAMPLE_GRAD"] == "matmul"
    assert bench_train_speed.impl_env("ours-compiled-regional")["MEDSEG_UPSAMPLE_GRAD"] != "matmul"
    with pytest.raises(KeyError):
        bench_train_speed.impl_settings("ours-fastest")


def test_train_speed_tiny_cpu_run_records_the_fast_path_setting(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train_speed.py"), "--cases", "b0-2-64",
           "--impls", "ours-graphs,ours-graphs-hf", "--steps", "3", "--warm", "1", "--n", "8",
           "--workers", "0", "--data", str(tmp_path / "data"), "--out", str(out), "--case-timeout", "400"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TMPDIR=str(tmp_path))  # its run folders land here too
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = {r["impl"]: r for r in json.loads(out.read_text())["results"]}
    assert "error" not in results["ours-graphs"], results["ours-graphs"].get("error")
    assert "error" not in results["ours-graphs-hf"], results["ours-graphs-hf"].get("error")
    assert results["ours-graphs"]["settings"]["fast_path"] == "on"
    assert results["ours-graphs-hf"]["settings"]["fast_path"] == "off"
    assert results["ours-graphs"]["images_per_s"] > 0
