"""The frozen command line on a GPU: build it with the CUDA torch installed here, then train and predict with it.

    bash benchmarks/bench_frozen_gpu.sh            # on the lent GPU machine, from the repository root
    python benchmarks/bench_frozen_gpu.py --tiny --no-install --dist /tmp/d   # the CPU rehearsal

Why: the desktop bundle was proven only with CPU torch. A GPU machine for building has no PySide6, so this
builds the command-line bundle (MEDSEG_BUNDLE=cli, dist/medseg-gui/medseg) and shows, with the frozen
binary alone, that:

1. the wheels the image lacks install from the carried ``.wheels/`` (PyInstaller, the DICOM libraries...);
2. the bundle builds (timed), and how big it is (``du``, with its largest folders);
3. start-up: ``medseg --version`` and ``medseg hardware --json`` (median of 3; all three runs are kept);
4. ``medseg train --demo`` (3 epochs at batch 16, pretrained weights off: the machine is offline) trains on
   the GPU (the demo's own batch on a 140 GB card is one step an epoch, too few for the graph to run):
   the run folder's ``events.jsonl`` names the CUDA device (RunStarted), says "CUDA graph captured in ..."
   when the whole-step graph was captured or "(CUDA graph ...: running without it)" when it fell back
   (PhaseChanged), and gives images/s (StepMetrics);
5. ``medseg predict`` on a demo slice and a DICOM file with the trained run, on the GPU.

Every phase runs under a timeout inside ``--budget-s``; whatever happens, the JSON is written
(``benchmarks/results/bench_frozen_gpu.json``) with the failure recorded, and the exit status is 1 when a
check failed. ``--tiny`` is the CPU rehearsal: a b0 at 64 px for 2 steps with 2 loader workers, no GPU checks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import write_results  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_frozen_gpu.json"

# What the frozen command line (and its build) needs beyond what the GPU image ships (torch, lightning,
# transformers, cv2, pynvml, numpy): distribution -> requirement, as pyproject.toml asks. Installed from
# the carried wheels with --no-deps only when missing or too old, so nothing the image has is replaced
# needlessly.
CARRIED_REQUIREMENTS = {
    "pyinstaller": "pyinstaller>=6.5",
    "pyinstaller-hooks-contrib": "pyinstaller-hooks-contrib>=2026.7",
    "altgraph": "altgraph",
    "setuptools": "setuptools>=42",
    "packaging": "packaging>=22",
    "typing-extensions": "typing-extensions>=4.6",
    "pillow": "pillow>=10",
    "psutil": "psutil>=5.9",
    "platformdirs": "platformdirs>=4",
    "nvidia-ml-py": "nvidia-ml-py>=12",
    "tomli-w": "tomli-w>=1.0",
    "pydicom": "pydicom>=3.0.1",
    "pyjpegls": "pyjpegls",
    "highdicom": "highdicom>=0.23",
    "python-gdcm": "python-gdcm>=3.0.10",
    "nibabel": "nibabel>=5",
    "tifffile": "tifffile>=2023.1",
}
GRAPH_CAPTURED = "CUDA graph captured"
GRAPH_FELL_BACK = "running without it"


def log(message: str) -> None:
    print(f"[bench_frozen_gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----- pure helpers (tested on the CPU machine) ---------------------------------------------------
def unsatisfied(requirements: dict[str, str], installed: dict[str, str]) -> list[str]:
    """The requirement strings whose distribution is missing from ``installed`` (name -> version) or
    has a version outside the requirement."""
    from packaging.requirements import Requirement

    todo = []
    for name, text in requirements.items():
        have = installed.get(name.lower())
        req = Requirement(text)
        if have is None or (req.specifier and not req.specifier.contains(have, prereleases=True)):
            todo.append(text)
    return todo


def installed_versions() -> dict[str, str]:
    from importlib import metadata

    return {(dist.metadata["Name"] or "").lower().replace("_", "-"): dist.version for dist in metadata.distributions()}


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path``, links not followed (what ``du --apparent-size`` counts)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def largest_parts(internal: Path, top: int = 8) -> dict[str, float]:
    """MiB of the largest top-level entries of the bundle's _internal/ (torch, nvidia, triton, ...)."""
    if not internal.is_dir():
        return {}
    sizes = {}
    for entry in internal.iterdir():
        sizes[entry.name] = tree_size(entry) if entry.is_dir() and not entry.is_symlink() else entry.lstat().st_size
    biggest = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {name: round(size / 2**20, 1) for name, size in biggest}


def read_events(path: Path) -> list[dict[str, Any]]:
    """The run's events as plain dicts; a truncated or foreign line is skipped (the run may have died)."""
    events = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events


def summarize_training(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the run folder says about where and how it trained: device, graph capture, speed, outcome."""
    out: dict[str, Any] = {"device": None, "graph": "not attempted", "graph_message": None, "images_per_s": None,
                           "finished": False, "failure": None}
    speeds, phases, warnings = [], [], []
    for event in events:
        kind = event["type"]
        if kind == "RunStarted":
            out["device"] = event.get("device")
            training = (event.get("config") or {}).get("training", {})
            dataset = (event.get("config") or {}).get("dataset", {})
            out["config"] = {key: training.get(key) for key in
                             ("variant", "batch_size", "precision", "cuda_graphs", "compile", "num_workers", "epochs")}
            out["config"]["image_size"] = dataset.get("image_size")
            out["steps_per_epoch"] = event.get("steps_per_epoch")
            out["train_images"] = event.get("train_images")
        elif kind == "PhaseChanged":
            message = event.get("message") or ""
            phases.append(f"{event.get('phase')}: {message}".rstrip(": "))
            if message.startswith(GRAPH_CAPTURED):
                out["graph"], out["graph_message"] = "captured", message
            elif "CUDA graph" in message and GRAPH_FELL_BACK in message:
                out["graph"], out["graph_message"] = "fell back", message
        elif kind == "StepMetrics" and event.get("images_per_s"):
            speeds.append(float(event["images_per_s"]))
        elif kind == "EpochMetrics":
            out.setdefault("epoch_time_s", []).append(event.get("epoch_time_s"))
            out["val_loss"] = event.get("val_loss")
        elif kind == "LogMessage":
            message = event.get("message") or ""
            if message.startswith("CUDA graphs"):  # the plan and its reason (core/planning/speed.py)
                out["graph_plan"] = message
            if event.get("level") in ("warning", "error"):
                warnings.append(message)
        elif kind == "RunFinished":
            out["finished"] = True
            out["duration_s"] = event.get("duration_s")
            out["steps_done"] = event.get("steps_done")
        elif kind == "RunFailed":
            out["failure"] = f"{event.get('reason')} {event.get('hint') or ''}".strip()
    if speeds:
        out["images_per_s"] = round(statistics.median(speeds[len(speeds) // 2:]), 1)  # the later half: warm
        out["images_per_s_max"] = round(max(speeds), 1)
    out["phases"], out["warnings"] = phases, warnings[:10]
    return out


def training_problems(summary: dict[str, Any], expect_gpu: bool) -> list[str]:
    """What is wrong with a frozen training run (empty: it did what the benchmark must show)."""
    problems = []
    if not summary["finished"]:
        problems.append(f"the run did not finish: {summary.get('failure') or 'no RunFinished event'}")
    device = summary.get("device") or ""
    if expect_gpu:
        if not device or device.lower() == "cpu":
            problems.append(f"trained on {device or 'an unknown device'}, not on the GPU")
        if summary["graph"] != "captured":
            why = summary.get("graph_message") or summary.get("graph_plan") or "no capture message"
            problems.append(f"the whole-step CUDA graph was not captured ({summary['graph']}: {why})")
    return problems


def median_s(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


# ----- running things -----------------------------------------------------------------------------
class Budget:
    """The whole benchmark's time: each phase gets a timeout that cannot overrun what is left."""

    def __init__(self, total_s: float):
        self.deadline = time.monotonic() + total_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, wanted_s: float, reserve_s: float = 0.0) -> float:
        return max(1.0, min(wanted_s, self.left() - reserve_s))


def run(cmd: Sequence[str], timeout_s: float, env: dict[str, str] | None = None,
        log_file: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; returns rc (None on timeout), seconds, and the output's tail. Never raises."""
    started = time.monotonic()
    try:
        proc = subprocess.run(list(cmd), cwd=ROOT, env=env, capture_output=True, text=True, errors="replace",
                              timeout=timeout_s)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = (exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "")
        err += f"\n(timed out after {timeout_s:.0f} s)"
    except OSError as exc:
        rc, out, err = 127, "", f"cannot run {cmd[0]}: {exc}"
    seconds = round(time.monotonic() - started, 3)
    if log_file is not None:
        log_file.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n", encoding="utf-8")
    return {"rc": rc, "s": seconds, "stdout": out, "stderr": err,
            "tail": (out + "\n" + err).strip()[-1500:]}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "os": platform.platform(), "python": platform.python_version()}
    smi = shutil.which("nvidia-smi")
    if smi:
        result = run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
        info["gpus"] = [line.strip() for line in result["stdout"].splitlines() if line.strip()]
    from importlib import metadata

    for name in ("torch", "lightning", "transformers", "pyinstaller", "numpy"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from bundle_options import torch_cuda_version, torch_nvidia_requirements

        info["torch_cuda"], info["torch_nvidia_wheels"] = torch_cuda_version(), torch_nvidia_requirements()
    except Exception as exc:  # noqa: BLE001 — a fact for the record, not a reason to stop
        info["torch_cuda"] = f"unknown ({exc})"
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    return info


def install_carried(wheels: Path, budget: Budget) -> dict[str, Any]:
    try:  # unsatisfied() reads requirements with it (the repository's packaging/ folder is not it)
        import packaging.requirements  # noqa: F401
    except ImportError:
        run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links", str(wheels),
             "packaging"], budget.timeout(60))
        for name in [m for m in sys.modules if m == "packaging" or m.startswith("packaging.")]:
            del sys.modules[name]  # a namespace package found before the install
        importlib.invalidate_caches()
    todo = unsatisfied(CARRIED_REQUIREMENTS, installed_versions())
    if not todo:
        return {"installed": [], "ok": True}
    log(f"installing from {wheels}: {' '.join(todo)}")
    result = run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--find-links",
                  str(wheels), *todo], budget.timeout(180))
    missing = unsatisfied(CARRIED_REQUIREMENTS, installed_versions())
    return {"installed": todo, "ok": not missing, "still_missing": missing, "s": result["s"],
            "tail": result["tail"] if result["rc"] != 0 else ""}


def compile_probe(exe: Path, env: dict[str, str], work: Path, budget: Budget, logs: Path) -> dict[str, Any]:
    """Frozen training with torch.compile forced on (what ``compile = "auto"`` picks for long runs): inductor
    and triton build kernels at run time, which a bundle may not allow. A finding, not a pass/fail check."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    import tomli_w

    config = work / "compile.toml"
    made = run([str(exe), "recommend", "--save", str(config)], budget.timeout(90, 10), env=env)
    if made["rc"] != 0 or not config.is_file():
        return {"rc": made["rc"], "tail": made["tail"], "note": "medseg recommend --save failed"}
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data.setdefault("training", {}).update(compile="on", epochs=1, pretrained="scratch", max_steps_per_epoch=40)
    data.setdefault("dataset", {})["path"] = "demo"
    config.write_text(tomli_w.dumps(data), encoding="utf-8")
    run_dir = work / "run_compile"
    trained = run([str(exe), "train", "--config", str(config), "--run-dir", str(run_dir)], budget.timeout(270, 5),
                  env=env, log_file=logs / "train_compile.log")
    summary = summarize_training(read_events(run_dir / "events.jsonl"))
    compiled = [p for p in summary["phases"] if p.startswith("training: compiled in")]
    return {"rc": trained["rc"], "wall_s": trained["s"], "compiled": compiled[0] if compiled else None,
            "graph": summary["graph"], "images_per_s": summary["images_per_s"], "finished": summary["finished"],
            "failure": summary["failure"], "warnings": summary["warnings"],
            "tail": trained["tail"][-800:] if trained["rc"] != 0 else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # On the lent H200 (16 cores, shared with another job) the CUDA build took 493 s: the defaults fit one
    # 600 s device call, with about 80 s left for start-up, training and predict (they took ~60 s).
    parser.add_argument("--budget-s", type=float, default=570, help="the whole benchmark's time (default 570)")
    parser.add_argument("--build-timeout-s", type=float, default=480)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="PyInstaller --distpath (default dist)")
    parser.add_argument("--work", type=Path, default=None, help="PyInstaller --workpath (default build/pyinstaller)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".wheels")
    parser.add_argument("--no-install", action="store_true", help="do not install the carried wheels")
    parser.add_argument("--no-build", action="store_true", help="measure the bundle already in --dist")
    # The demo's own recommendation on a 140 GB card is one batch of 190 = 1 step per epoch: the graph
    # (captured after 3 warm-up steps) would never run. Batch 16: 12 steps per epoch, captured in epoch 1.
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tiny", action="store_true",
                        help="CPU rehearsal: b0, 64 px, 2 steps, no GPU checks (what a CPU machine can afford)")
    parser.add_argument("--try-compile", action="store_true",
                        help="also train with torch.compile on (a finding: minutes of warm-up; not a pass/fail check)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    budget = Budget(args.budget_s)
    bundle = args.dist / "medseg-gui"
    exe = bundle / ("medseg.exe" if os.name == "nt" else "medseg")
    expect_gpu = not args.tiny
    result: dict[str, Any] = {
        "benchmark": "frozen command line on a GPU (CUDA torch bundle)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "mode": "tiny CPU rehearsal" if args.tiny else "gpu",
        "phases": {}, "problems": [],
    }
    phases, problems = result["phases"], result["problems"]
    work = Path(tempfile.mkdtemp(prefix="medseg-frozen-gpu-"))
    logs = args.out.parent / f"{args.out.stem}_logs"  # the full build/train/predict output, beside the JSON
    logs.mkdir(parents=True, exist_ok=True)
    try:
        result["machine"] = machine()
        log(f"machine: {result['machine']}")

        if not args.no_install:
            phases["install"] = install_carried(args.wheels, budget)
            if not phases["install"]["ok"]:
                problems.append(f"carried wheels missing: {phases['install']['still_missing']}")
            result["machine"]["pyinstaller"] = installed_versions().get("pyinstaller")

        if not args.no_build:
            log("building the command-line bundle (MEDSEG_BUNDLE=cli)")
            env = dict(os.environ, MEDSEG_BUNDLE="cli", PYTHON=sys.executable, MEDSEG_DISTPATH=str(args.dist))
            if args.work:
                env["MEDSEG_WORKPATH"] = str(args.work)
            built = run(["bash", "packaging/build.sh"], budget.timeout(args.build_timeout_s, 60), env=env,
                        log_file=logs / "build.log")
            phases["build"] = {"rc": built["rc"], "s": built["s"], "tail": built["tail"] if built["rc"] != 0 else
                               built["tail"][-400:]}
            log(f"build: rc {built['rc']} in {built['s']:.0f} s")
            if built["rc"] != 0:
                problems.append(f"the build failed (rc {built['rc']}): see {logs / 'build.log'}")
        if not exe.is_file():
            problems.append(f"no frozen command line at {exe}")
            return 1

        size = tree_size(bundle)
        phases["size"] = {"bytes": size, "gib": round(size / 2**30, 2),
                          "du_sh": run(["du", "-sh", str(bundle)], 60)["stdout"].split("\t")[0].strip(),
                          "largest_mib": largest_parts(bundle / "_internal")}
        log(f"bundle size: {phases['size']['du_sh']} ({phases['size']['largest_mib']})")

        home = work / "home"
        env = dict(os.environ, MEDSEG_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   NO_ALBUMENTATIONS_UPDATE="1")
        env.pop("PYTHONPATH", None)  # the frozen binary must not lean on the source tree
        for name, cmd in (("version", [str(exe), "--version"]), ("hardware", [str(exe), "hardware", "--json"])):
            times, last = [], {}
            for _ in range(3):
                last = run(cmd, budget.timeout(90, 30), env=env)
                if last["rc"] != 0:
                    break
                times.append(last["s"])
            phases[f"startup_{name}"] = {"runs_s": times, "median_s": median_s(times), "rc": last["rc"]}
            if last["rc"] != 0:
                phases[f"startup_{name}"]["tail"] = last["tail"]
                problems.append(f"frozen medseg {name} failed (rc {last['rc']})")
            elif name == "hardware":
                try:
                    gpus = json.loads(last["stdout"]).get("gpus") or []
                    phases["startup_hardware"]["gpus"] = [g.get("name") for g in gpus if isinstance(g, dict)]
                except (json.JSONDecodeError, AttributeError):
                    phases["startup_hardware"]["stdout"] = last["stdout"][-400:]
                if expect_gpu and not phases["startup_hardware"].get("gpus"):
                    problems.append("frozen medseg hardware lists no GPU")
            log(f"startup {name}: {times} s")

        run_dir = work / "run"
        train = [str(exe), "train", "--demo", "--pretrained", "scratch", "--run-dir", str(run_dir)]
        if not args.tiny:
            train += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
        else:
            # 2 spawned loader workers: they start from the frozen binary (freeze_support), a bundle-only path
            train += ["--epochs", "1", "--variant", "b0", "--image-size", "64", "--batch-size", "2",
                      "--max-steps-per-epoch", "2", "--workers", "2"]
        log("frozen training: " + " ".join(train[1:]))
        trained = run(train, budget.timeout(300, 20), env=env, log_file=logs / "train.log")  # predict: ~8 s
        summary = summarize_training(read_events(run_dir / "events.jsonl"))
        summary.update(rc=trained["rc"], wall_s=trained["s"])
        if trained["rc"] != 0:
            summary["tail"] = trained["tail"]
        phases["train"] = summary
        problems += [f"train: {p}" for p in training_problems(summary, expect_gpu)]
        log(f"train: rc {trained['rc']} in {trained['s']:.0f} s on {summary['device']}, graph {summary['graph']}, "
            f"{summary['images_per_s']} images/s")

        inputs = sorted((home / "cache" / "demo").glob("**/valid/images/*.png"))[:1]
        try:
            from pydicom.data import get_testdata_file

            inputs.append(Path(get_testdata_file("CT_small.dcm")))
        except Exception as exc:  # noqa: BLE001 — no pydicom here: predict the PNG alone
            phases["predict_note"] = f"no DICOM test file ({exc})"
        if summary["finished"] and inputs:
            predicted = run([str(exe), "predict", str(run_dir), *map(str, inputs), "--out", str(work / "pred"),
                             "--json"], budget.timeout(120, 2), env=env, log_file=logs / "predict.log")
            phase: dict[str, Any] = {"rc": predicted["rc"], "s": predicted["s"]}
            try:
                answer = json.loads(predicted["stdout"])
                phase.update(model=answer.get("model_info"), errors=answer.get("errors"),
                             results=[f"{r.get('kind')} {r.get('shape')}" for r in answer.get("results", [])])
            except json.JSONDecodeError:
                phase["tail"] = predicted["tail"]
            phases["predict"] = phase
            if predicted["rc"] != 0 or phase.get("errors") or len(phase.get("results") or []) != len(inputs):
                problems.append(f"frozen predict failed (rc {predicted['rc']})")
            elif expect_gpu and "cuda" not in str(phase.get("model")).lower():
                problems.append(f"frozen predict did not run on the GPU ({phase.get('model')})")
            log(f"predict: rc {predicted['rc']} in {predicted['s']:.1f} s: {phase.get('model')}")
        else:
            problems.append("predict skipped: no finished run or no demo image")
        if args.try_compile:
            log("frozen training with torch.compile on")
            phases["compile_probe"] = compile_probe(exe, env, work, budget, logs)
            log(f"compile probe: {phases['compile_probe']}")
        return 1 if problems else 0
    except Exception as exc:  # noqa: BLE001 — record whatever broke; the JSON must still be written
        problems.append(f"benchmark error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        result["ok"] = not problems
        result["budget_left_s"] = round(budget.left(), 1)
        write_results(args.out, result)
        shutil.rmtree(work, ignore_errors=True)
        log(f"{'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)} -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
