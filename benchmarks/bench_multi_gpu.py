"""Two GPUs against one, through the engine's TrainingSession, in one command on a 2-GPU machine.

    NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \\
        python benchmarks/bench_multi_gpu.py

For each configuration (variant-batch-size, the batch per GPU), three runs, each in a fresh process
(Lightning's DDP starts the second rank by re-running this command):

* ``1gpu``: one GPU, batch B (the whole step as one CUDA graph);
* ``2gpu``: two GPUs, batch B each (the graphed step with its captured all-reduce, core/engine/grad_sync.py);
* ``1gpu-2x``: one GPU, batch 2B: the same global batch as ``2gpu``, for the loss-curve comparison.

Every run trains the same synthetic slices (a disk and a square on noise, 3 classes, held in memory
so the loader is not what is measured), in the same order (no shuffling: the DistributedSampler
interleaves the slices, so each 2-GPU step sees exactly the slices of the matching 2B step), from
the same random initialisation (no pretrained weights offline), compile off. Dropout and drop-path
are set to 0 in every run so the loss comparison is not a comparison of random masks.
Throughput: images per second over epochs 2 and later (epoch 1 holds the warm-up and the capture),
host-timed with a device sync at each epoch's first and last batch, validation excluded.

Loss comparison: the per-step training loss (mean over ranks) of ``2gpu`` against ``1gpu-2x``,
and the per-epoch mean. They are the same maths (mean of per-image Dice + per-pixel CE over the
same 2B slices, gradients averaged) except rounding and, unless ``--sync-bn on``
(training.sync_batchnorm), the decode head's BatchNorm, whose batch statistics are then per GPU as under
plain DDP: bf16 autocast rounds differently when the same images are split over two processes, and
training amplifies any difference step by step (the curves are chaotic, not noisy). Hence the tolerances: the first LOSS_STEPS_EARLY steps each within LOSS_TOL_STEP (before
amplification), the 10-step moving average within LOSS_TOL_SMOOTH and every epoch's mean within
LOSS_TOL_EPOCH. ``--precision 32`` repeats the comparison in fp32 (TF32 off) to show what is rounding.

The 2-GPU runs also measure the gradient all-reduce alone (eager and captured in a CUDA graph, the
size of the model's gradients) and record NCCL's transport, so a slow interconnect is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

CONFIGS = ["b2-32-256", "b5-16-256"]
RUNS = {"1gpu": (1, 1), "2gpu": (2, 1), "1gpu-2x": (1, 2)}  # name -> (GPUs, batch multiplier)
TARGET_SPEEDUP = 1.8
LOSS_TOL_EPOCH = 0.02   # max relative difference of an epoch's mean training loss
LOSS_TOL_STEP = 0.05    # max relative difference of each of the first LOSS_STEPS_EARLY steps
LOSS_TOL_SMOOTH = 0.05  # max relative difference of the 10-step moving average, every step
LOSS_STEPS_EARLY = 10
SMOOTH_WINDOW = 10
NCCL_SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def parse_config(text: str) -> tuple[str, int, int]:
    variant, batch, size = text.split("-")
    return variant, int(batch), int(size)


# ------------------------------------------------------------------------------------------------
# worker: one run; every rank executes it, rank 0 prints one RESULT line
# ------------------------------------------------------------------------------------------------
def _synthetic_datamodule(n_train: int, n_val: int, size: int, workers: int):
    sys.path.insert(0, str(ROOT / "tests"))
    from engine_helpers import synthetic_arrays

    def factory(config):
        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        ti, tm = synthetic_arrays(n_train, size, channels=3, seed=1)
        vi, vm = synthetic_arrays(n_val, size, channels=3, seed=2)
        batch = config.training.batch_size

        class DM(L.LightningDataModule):
            in_channels = 3

            def setup(self, stage=None):
                self.train_dataset = TensorDataset(torch.from_numpy(ti), torch.from_numpy(tm))
                self.val_dataset = TensorDataset(torch.from_numpy(vi), torch.from_numpy(vm))

            def train_dataloader(self):
                return DataLoader(self.train_dataset, batch_size=batch, shuffle=False, drop_last=True,
                                  num_workers=workers, pin_memory=True, persistent_workers=workers > 0)

            def val_dataloader(self):
                return DataLoader(self.val_dataset, batch_size=batch)

        return DM()

    return factory


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _epoch_timer():
    import lightning as L
    import torch

    class EpochTimer(L.Callback):
        """Training time per epoch (device-synced at its first and last batch) and every step's loss."""

        def __init__(self):
            self.epochs, self._losses, self.step_losses = [], [], []
            self.grad_numel = 0

        def on_train_start(self, trainer, module):
            self.grad_numel = sum(p.numel() for p in module.parameters() if p.requires_grad)

        def on_train_epoch_start(self, trainer, module):
            _sync()
            self._t0, self._n = time.perf_counter(), 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self._n += 1
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self._losses.append(loss.detach().float().clone())  # a graph's loss buffer: copy it
            if batch_idx + 1 == trainer.num_training_batches:
                _sync()
                self.epochs.append({"steps": self._n, "seconds": time.perf_counter() - self._t0})

        def on_train_end(self, trainer, module):
            if self._losses:
                mean = trainer.strategy.reduce(torch.stack(self._losses), reduce_op="mean")
                self.step_losses = [float(v) for v in mean.cpu()]

    return EpochTimer()


def _without_dropout() -> None:
    """Dropout and drop-path off in the model the session builds (deterministic loss curves)."""
    import torch

    import medseg_gui.core.engine.model as model_mod

    build = model_mod.build_model

    def build_model(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        return model

    model_mod.build_model = build_model


def _overlapped_buckets(bucket_mb: float) -> None:
    """The overlapped variant of the gradient average (core/engine/grad_sync.py) instead of one bucket."""
    import medseg_gui.core.engine.grad_sync as gs

    init = gs.FlatGradBucket.__init__

    def overlapped(self, params, group=None, bucket_mb_=None):
        init(self, params, group, bucket_mb)

    gs.FlatGradBucket.__init__ = overlapped


def _all_reduce_probe(numel: int, repeats: int = 20) -> dict | None:
    """Time one all-reduce of a buffer the size of the model's gradients (fp32), eagerly and replayed
    from a CUDA graph, on the finished run's process group: the step's own communication cost."""
    import torch
    import torch.distributed as dist

    if not (torch.cuda.is_available() and dist.is_available() and dist.is_initialized()):
        return None
    try:
        buf = torch.ones(numel, device="cuda")
        out = {"numel": numel, "mbytes": numel * 4 / 1e6}
        for _ in range(3):
            dist.all_reduce(buf)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(buf)
        torch.cuda.synchronize()
        out["eager_ms"] = 1000 * (time.perf_counter() - t) / repeats
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            dist.all_reduce(buf)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            graph.replay()
        torch.cuda.synchronize()
        out["graph_ms"] = 1000 * (time.perf_counter() - t) / repeats
        graph.reset()
        # ring all-reduce moves 2(n-1)/n of the buffer through each link ("bus bandwidth", nccl-tests)
        n = dist.get_world_size()
        for key in ("eager", "graph"):
            out[f"{key}_bus_gb_s"] = out["mbytes"] / 1e3 * 2 * (n - 1) / n / (out[f"{key}_ms"] / 1e3)
        return out
    except Exception as exc:  # noqa: BLE001 — informational only
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def worker(args: argparse.Namespace) -> None:
    import torch

    from medseg_gui.core import config as cfg
    from medseg_gui.core.engine.session import TrainingSession

    variant, _, size = parse_config(args.config)
    config = cfg.RunConfig()
    cfg.set_num_classes(config, 3, ["background", "disk", "square"])
    config.dataset.image_size = size
    tr = config.training
    tr.variant, tr.batch_size, tr.pretrained, tr.epochs = variant, args.batch, "scratch", args.epochs
    tr.devices, tr.accelerator, tr.precision = args.devices, args.accelerator, args.precision
    tr.sync_batchnorm = args.sync_bn == "on"
    if args.precision == "32":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    tr.compile, tr.cuda_graphs, tr.num_workers = "off", args.cuda_graphs, args.workers
    tr.output_dir = args.run_root
    _without_dropout()
    if args.bucket_mb:
        _overlapped_buckets(args.bucket_mb)
    timer = _epoch_timer()
    events: list = []
    session = TrainingSession(config, events.append, callbacks=[timer],
                              datamodule_factory=_synthetic_datamodule(args.train, args.val, size, args.workers))
    result = session.run()
    probe = _all_reduce_probe(timer.grad_numel) if args.devices > 1 and timer.grad_numel else None
    if session.rank != 0:
        return
    timed = timer.epochs[1:]
    steps, seconds = sum(e["steps"] for e in timed), sum(e["seconds"] for e in timed)
    kinds = [type(e).__name__ for e in events]
    out = {"config": args.config, "devices": args.devices, "batch_per_gpu": args.batch,
           "global_batch": args.batch * args.devices, "cuda_graphs": args.cuda_graphs,
           "finished": type(result).__name__ == "RunFinished",
           "failure": None if type(result).__name__ == "RunFinished" else f"{result.reason}\n{result.detail[-2000:]}",
           "epochs": timer.epochs, "steps_timed": steps, "seconds_timed": seconds,
           "images_per_s": steps * args.batch * args.devices / seconds if seconds else None,
           "step_ms": 1000 * seconds / steps if steps else None,
           "step_losses": timer.step_losses, "oom_recoveries": kinds.count("OomRecovered"),
           "graph_messages": [e.message for e in events if type(e).__name__ in ("LogMessage", "PhaseChanged")
                              and "graph" in (e.message or "").lower()],
           "warnings": [e.message for e in events if type(e).__name__ == "LogMessage" and e.level == "warning"],
           "peak_reserved_gib_rank0": torch.cuda.max_memory_reserved() / 2**30 if torch.cuda.is_available() else None,
           "precision": args.precision, "sync_batchnorm": args.sync_bn, "all_reduce_probe": probe}
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------
def run_one(config: str, name: str, args: argparse.Namespace) -> dict:
    gpus, multiplier = RUNS[name]
    _, batch, _ = parse_config(config)
    cmd = [sys.executable, __file__, "--worker", "--config", config, "--devices", str(gpus),
           "--batch", str(batch * multiplier), "--epochs", str(args.epochs), "--train", str(args.train),
           "--val", str(args.val), "--workers", str(args.workers), "--cuda-graphs", args.cuda_graphs,
           "--run-root", tempfile.mkdtemp(prefix="bench_multi_gpu_runs_"), "--accelerator", args.accelerator,
           "--bucket-mb", str(args.bucket_mb), "--precision", args.precision, "--sync-bn", args.sync_bn]
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               **NCCL_SAFE_ENV)
    if gpus > 1:
        env.setdefault("NCCL_DEBUG", "INFO")  # its transport lines ("via P2P/CUMEM", "via SHM") are kept
    t = time.perf_counter()
    stdout, exit_note = _run_until_result(cmd, env, args.run_timeout)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res.update(run=name, wall_s=time.perf_counter() - t, exit=exit_note)
            transport = sorted({line.split(" via ", 1)[1].strip() for line in stdout.splitlines()
                                if "NCCL INFO Channel" in line and " via " in line})
            if transport:
                res["nccl_transport"] = transport[:6]
            return res
    return {"config": config, "run": name, "error": f"{exit_note}: {stdout[-4000:]}", "wall_s": time.perf_counter() - t}


def _run_until_result(cmd: list[str], env: dict, timeout: float, grace: float = 60.0) -> tuple[str, str]:
    """Run a worker (and the ranks it starts) in its own process group, output to a file (a rank
    that inherits a pipe would keep it open); once rank 0 printed its result, give the processes
    ``grace`` seconds to exit, then end the group, and say so."""
    import signal

    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        start, seen_result, note = time.perf_counter(), None, "exited"
        while proc.poll() is None:
            time.sleep(1.0)
            now = time.perf_counter()
            if seen_result is None:
                out.seek(0)
                if "\nRESULT " in "\n" + out.read():
                    seen_result = now
            if now - start > timeout or (seen_result is not None and now - seen_result > grace):
                note = (f"did not exit {grace:.0f} s after its result: ended" if seen_result is not None
                        else f"timed out after {timeout} s: ended")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        out.seek(0)
        return out.read(), note


def compare_losses(two: list[float], ref: list[float], steps_per_epoch: int) -> dict:
    """Max relative differences of the 2-GPU curve against the 1-GPU doubled-batch one."""
    n = min(len(two), len(ref))
    if not n:
        return {"steps_compared": 0}
    step_rel = [abs(a - b) / abs(b) for a, b in zip(two[:n], ref[:n])]
    smooth_rel = [abs(a - b) / abs(b) for a, b in zip(_moving_average(two[:n]), _moving_average(ref[:n]))]
    early = step_rel[:LOSS_STEPS_EARLY]
    epochs = []
    for start in range(0, n, steps_per_epoch):
        a, b = two[start:start + steps_per_epoch], ref[start:start + steps_per_epoch]
        if len(a) == steps_per_epoch:
            epochs.append((sum(a) / len(a), sum(b) / len(b)))
    epoch_rel = [abs(a - b) / abs(b) for a, b in epochs]
    return {"steps_compared": n, "first_step_rel_diff": step_rel[0], "max_step_rel_diff": max(step_rel),
            f"max_step_rel_diff_first_{LOSS_STEPS_EARLY}": max(early),
            f"max_moving_average_{SMOOTH_WINDOW}_rel_diff": max(smooth_rel),
            "epoch_loss_2gpu": [a for a, _ in epochs], "epoch_loss_1gpu_2x": [b for _, b in epochs],
            "max_epoch_rel_diff": max(epoch_rel) if epoch_rel else None,
            "tolerance_step_early": LOSS_TOL_STEP, "tolerance_moving_average": LOSS_TOL_SMOOTH,
            "tolerance_epoch": LOSS_TOL_EPOCH,
            "within_tolerance": max(early) <= LOSS_TOL_STEP and max(smooth_rel) <= LOSS_TOL_SMOOTH
            and (not epoch_rel or max(epoch_rel) <= LOSS_TOL_EPOCH)}


def _moving_average(values: list[float], window: int = SMOOTH_WINDOW) -> list[float]:
    """Trailing mean over up to ``window`` steps (the curve a loss plot shows)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def summarise(config: str, runs: dict[str, dict]) -> dict:
    one, two, ref = runs.get("1gpu", {}), runs.get("2gpu", {}), runs.get("1gpu-2x", {})
    summary: dict = {"config": config}
    if one.get("images_per_s") and two.get("images_per_s"):
        summary.update(images_per_s_1gpu=one["images_per_s"], images_per_s_2gpu=two["images_per_s"],
                       step_ms_1gpu=one["step_ms"], step_ms_2gpu=two["step_ms"],
                       speedup=two["images_per_s"] / one["images_per_s"])
        summary["meets_target"] = summary["speedup"] >= TARGET_SPEEDUP
    if two.get("step_losses") and ref.get("step_losses") and two.get("epochs"):
        summary["loss_curve"] = compare_losses(two["step_losses"], ref["step_losses"], two["epochs"][0]["steps"])
    summary["oom_recoveries"] = sum(r.get("oom_recoveries", 0) for r in runs.values())
    summary["errors"] = [f"{name}: {r['error'][-300:]}" for name, r in runs.items() if "error" in r]
    return summary


def _topology() -> str | None:
    """``nvidia-smi topo -m``: how the GPUs are linked (NV# = NVLink, PIX/PHB/SYS = PCIe paths)."""
    try:
        return subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20).stdout[:2000]
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    import torch

    info = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "gpu_count": torch.cuda.device_count(), "torch": torch.__version__, "host": platform.node()}
    try:
        info["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    except Exception:  # noqa: BLE001 — informational only
        info["nccl"] = None
    try:
        import lightning

        info["lightning"] = lightning.__version__
    except ImportError:
        pass
    return info


def print_table(summaries: list[dict]) -> None:
    print(f"\n{'config':<12}{'1 GPU img/s':>14}{'2 GPUs img/s':>14}{'speedup':>9}{'loss max rel (step/epoch)':>28}{'OOM':>5}")
    for s in summaries:
        loss = s.get("loss_curve", {})
        cell = (f"{loss.get('max_step_rel_diff', float('nan')):.4f}/{loss.get('max_epoch_rel_diff') or float('nan'):.4f}"
                if loss else "-")
        print(f"{s['config']:<12}{s.get('images_per_s_1gpu', float('nan')):>14.1f}"
              f"{s.get('images_per_s_2gpu', float('nan')):>14.1f}{s.get('speedup', float('nan')):>9.2f}"
              f"{cell:>28}{s['oom_recoveries']:>5}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--run-root", help=argparse.SUPPRESS)
    p.add_argument("--accelerator", default="gpu", help=argparse.SUPPRESS)  # "cpu": a plumbing check only
    p.add_argument("--configs", default=",".join(CONFIGS), help="variant-batch per GPU-image size, comma-separated")
    p.add_argument("--runs", default=",".join(RUNS), help="which of 1gpu, 2gpu, 1gpu-2x")
    p.add_argument("--train", type=int, default=1920, help="training slices (960 at least)")
    p.add_argument("--val", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4, help="epoch 1 is the warm-up; the rest are timed")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per GPU")
    p.add_argument("--cuda-graphs", default="auto", help="training.cuda_graphs for every run")
    p.add_argument("--bucket-mb", type=float, default=0.0,
                   help="overlap the gradient all-reduce with the backward in buckets of this size "
                        "(default 0: one all-reduce after the backward, the engine's default)")
    p.add_argument("--precision", default="auto", help="training.precision for every run ('32': fp32, TF32 off)")
    p.add_argument("--sync-bn", default="off", choices=("on", "off"), help="training.sync_batchnorm for every run")
    p.add_argument("--run-timeout", type=int, default=300)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_multi_gpu.json"))
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    command = "python benchmarks/bench_multi_gpu.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    doc = {"benchmark": "multi_gpu", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "command": " ".join(f"{k}={v}" for k, v in NCCL_SAFE_ENV.items()) + " " + command,
           **environment(), "train_slices": args.train, "val_slices": args.val, "epochs": args.epochs,
           "timed_epochs": f"2-{args.epochs}", "data": "synthetic slices in memory, same order in every run",
           "dropout": "0 in every run", "target_speedup": TARGET_SPEEDUP,
           "gradient_all_reduce": f"overlapped, {args.bucket_mb} MB buckets" if args.bucket_mb else "one bucket after the backward",
           "precision": args.precision, "sync_batchnorm": args.sync_bn, "interconnect": _topology(),
           "loss_tolerance": {"step_early": LOSS_TOL_STEP, "early_steps": LOSS_STEPS_EARLY,
                              "moving_average": LOSS_TOL_SMOOTH, "window": SMOOTH_WINDOW, "epoch": LOSS_TOL_EPOCH,
                              "why": "rounding (bf16 autocast splits the same images over two processes), "
                                     "amplified step by step by training, and per-GPU BatchNorm statistics "
                                     "unless sync_batchnorm is on; everything else is the same maths"},
           "speedup": {}, "summaries": [], "runs": []}
    out = Path(args.out)
    for config in [c for c in args.configs.split(",") if c]:
        runs = {}
        for name in [r for r in args.runs.split(",") if r]:
            res = run_one(config, name, args)
            runs[name] = res
            doc["runs"].append(res)
            short = {k: v for k, v in res.items() if k not in ("step_losses", "error", "tail")}
            print(json.dumps(short) if "error" not in res else f"{config} {name} FAILED:\n{res['error']}", flush=True)
            write_results(out, doc)
        summary = summarise(config, runs)
        doc["summaries"].append(summary)
        if "speedup" in summary:
            doc["speedup"][config] = summary["speedup"]
        write_results(out, doc)
    doc["meets_target"] = bool(doc["speedup"]) and all(v >= TARGET_SPEEDUP for v in doc["speedup"].values())
    write_results(out, doc)
    print_table(doc["summaries"])
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
