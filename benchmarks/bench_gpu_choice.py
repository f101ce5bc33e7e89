"""The GPU that was planned is the GPU that trains: two workstation scenarios on a 2-GPU machine.

Each scenario fills one physical card with another process (a "hog" holding all but a few GB), then
runs the public command line exactly as a user would: ``medseg recommend --json`` and
``medseg train --demo``. It records which card the plan sized, how many out-of-memory recoveries the
run needed, and which physical card's memory actually rose during training, read from NVML (the
trainer cannot vouch for itself). Scenarios:

- ``busy_gpu0``: GPU 0 has ``--busy-free-gb`` free, GPU 1 is idle, no CUDA_VISIBLE_DEVICES: the plan
  and the run must both be on physical GPU 1.
- ``visible_1``: physical GPU 1 has ``--visible-free-gb`` free and ``CUDA_VISIBLE_DEVICES=1``: the plan
  must size that small card (not NVML's GPU 0) and the run must fit it.

    python benchmarks/bench_gpu_choice.py --out benchmarks/results/bench_gpu_choice.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOG = r"""
import sys, torch
torch.cuda.set_device(0)
free, _ = torch.cuda.mem_get_info()
keep = float(sys.argv[1]) * 2**30
block = torch.empty(max(0, int(free - keep)), dtype=torch.uint8, device="cuda")
print("ready", torch.cuda.mem_get_info()[0] / 2**30, flush=True)
sys.stdin.read()
"""


def _nvml_used_gb() -> list[float]:
    import pynvml

    return [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used / 2**30
            for i in range(pynvml.nvmlDeviceGetCount())]


class _UsedMemoryWatch:
    """The largest rise in used memory per physical card while the training command runs."""

    def __init__(self) -> None:
        self.base = _nvml_used_gb()
        self.peak = list(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = [max(p, u) for p, u in zip(self.peak, _nvml_used_gb())]

    def rise(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return [round(p - b, 2) for p, b in zip(self.peak, self.base)]


def _hog(physical: int, keep_free_gb: float) -> subprocess.Popen:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(physical))
    proc = subprocess.Popen([sys.executable, "-c", HOG, str(keep_free_gb)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("ready"):
        raise RuntimeError(f"the memory hog on GPU {physical} did not start: {line!r}")
    return proc


def _medseg(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medseg_gui.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _scenario(name: str, hog_gpu: int, keep_free_gb: float, visible: str | None, steps: int,
              home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["MEDSEG_HOME"] = str(home)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    hog = _hog(hog_gpu, keep_free_gb)
    try:
        rec = _medseg(["recommend", "--json"], env, 300)
        plan = json.loads(rec.stdout) if rec.returncode == 0 else {"error": rec.stderr[-2000:]}
        watch = _UsedMemoryWatch()
        run_dir = home / f"run_{name}"
        start = time.time()
        train = _medseg(["train", "--demo", "--epochs", "1", "--max-steps-per-epoch", str(steps),
                         "--run-dir", str(run_dir), "--events-json"], env, 900)
        rise = watch.rise()
    finally:
        hog.kill()
        hog.wait()
    events = [json.loads(line) for line in train.stdout.splitlines() if line.startswith("{")]
    kinds = [e.get("type") for e in events]
    started = next((e for e in events if e.get("type") == "RunStarted"), {})
    config = started.get("config", {}).get("training", {})
    rates = [e["images_per_s"] for e in events if e.get("type") == "StepMetrics" and e.get("images_per_s")]
    logs = [e["message"] for e in events if e.get("type") == "LogMessage" and "GPU" in e.get("message", "")]
    return {
        "scenario": name, "hog_physical_gpu": hog_gpu, "hog_keeps_free_gb": keep_free_gb,
        "cuda_visible_devices": visible,
        "plan_gpu": plan.get("gpu"), "plan_gpus": plan.get("gpus"),
        "plan": {k: plan.get(k) for k in ("variant", "batch_size", "accumulate_grad_batches", "image_size",
                                          "precision", "free_gb", "budget_gb", "predicted_peak_gb")}
        if "error" not in plan else plan["error"],
        "train_exit": train.returncode, "terminal": kinds[-1] if kinds else None,
        "oom_recoveries": kinds.count("OomRecovered"),
        "run_gpus": config.get("gpus"), "run_variant": config.get("variant"),
        "run_batch_size": config.get("batch_size"), "predicted_peak_gb": started.get("predicted_peak_gb"),
        "used_memory_rise_gb_per_physical_gpu": rise,
        "trained_on_physical_gpu": max(range(len(rise)), key=rise.__getitem__) if rise else None,
        "last_images_per_s": rates[-1] if rates else None,
        "gpu_log_lines": logs[:4],
        "stderr_tail": train.stderr[-1500:] if train.returncode else "",
        "duration_s": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/bench_gpu_choice.json")
    parser.add_argument("--busy-free-gb", type=float, default=6.0)
    parser.add_argument("--visible-free-gb", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    import pynvml
    import torch

    pynvml.nvmlInit()
    if pynvml.nvmlDeviceGetCount() < 2:
        sys.exit("this benchmark needs a machine with 2 GPUs")
    names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        results.append(_scenario("busy_gpu0", 0, args.busy_free_gb, None, args.steps, home))
        results.append(_scenario("visible_1", 1, args.visible_free_gb, "1", args.steps, home))
    checks = {
        "busy_gpu0_planned_gpu1": (results[0]["plan_gpu"] or {}).get("nvml_index") == 1,
        "busy_gpu0_trained_on_gpu1": results[0]["trained_on_physical_gpu"] == 1,
        "visible_1_planned_gpu1": (results[1]["plan_gpu"] or {}).get("nvml_index") == 1,
        "visible_1_trained_on_gpu1": results[1]["trained_on_physical_gpu"] == 1,
        "zero_oom_recoveries": all(r["oom_recoveries"] == 0 for r in results),
        "both_finished": all(r["terminal"] == "RunFinished" for r in results),
    }
    report = {"gpus": [str(n) for n in names], "torch": torch.__version__, "command": " ".join(sys.argv),
              "scenarios": results, "checks": checks, "all_passed": all(checks.values())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
