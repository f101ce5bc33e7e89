#!/usr/bin/env bash
# Build the one-folder bundle and check that it really works frozen:
#   1. `medseg-gui --self-test` opens the window offscreen, prints its JSON line and exits 0;
#   2. the bundled `medseg` CLI trains a tiny model on the demo dataset (torch, lightning,
#      transformers' SegFormer and albumentations all load from the bundle), then
#   3. predicts a PNG slice and a DICOM file with it (pydicom and the inference path).
# Usage: bash packaging/check_frozen.sh [--no-build]. Prints the bundle size and the timings.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
DIST="dist/medseg-gui"

build_s="skipped"
if [[ "${1:-}" != "--no-build" ]]; then
  t0=$(date +%s)
  bash packaging/build.sh
  build_s=$(( $(date +%s) - t0 ))
fi
[[ -x "$DIST/medseg-gui" && -x "$DIST/medseg" ]] || { echo "no bundle in $DIST: build it first (bash packaging/build.sh)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# An isolated, offline, display-less environment: nothing from the build machine's home leaks in.
export MEDSEG_HOME="$work/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1
export QT_QPA_PLATFORM=offscreen CUDA_VISIBLE_DEVICES=""
now() { "$PYTHON" -c 'import time; print(time.time())'; }

echo "== frozen self-test"
t0=$(now)
"$DIST/medseg-gui" --self-test >"$work/self_test.out" 2>"$work/self_test.err" || {
  echo "medseg-gui --self-test failed:" >&2; cat "$work/self_test.out" "$work/self_test.err" >&2; exit 1; }
self_test_s=$("$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(now)")
"$PYTHON" - "$work/self_test.out" <<'PY'
import json, sys
lines = [line for line in open(sys.argv[1], encoding="utf-8") if line.strip().startswith("{")]
if not lines:
    sys.exit(f"the frozen app printed no JSON line: {open(sys.argv[1]).read()!r}")
result = json.loads(lines[-1])
if "first_paint_ms" not in result or "error" in result:
    sys.exit(f"unexpected self-test result: {result}")
loaded = [name for name, on in result["heavy_modules_loaded"].items() if on]
if loaded:
    sys.exit(f"the frozen app imported {loaded} before its first paint (start-up must stay light)")
print(json.dumps(result))
PY

echo "== frozen CLI: tiny training run on the demo dataset"
"$DIST/medseg" --version
"$DIST/medseg" train --demo --variant b0 --pretrained scratch --image-size 64 --batch-size 2 \
  --epochs 1 --max-steps-per-epoch 2 --workers 0 --run-dir "$work/run" >"$work/train.log" 2>&1 || {
  echo "frozen medseg train failed:" >&2; tail -40 "$work/train.log" >&2; exit 1; }
tail -2 "$work/train.log"
[[ -f "$work/run/bundle/model.safetensors" ]] || { echo "the frozen training wrote no model bundle" >&2; exit 1; }

echo "== frozen CLI: predict a PNG slice and a DICOM file"
png=$(find "$MEDSEG_HOME/cache/demo" -path '*valid/images/*.png' -print -quit)
dcm=$("$PYTHON" -c "from pydicom.data import get_testdata_file; print(get_testdata_file('CT_small.dcm'))")
"$DIST/medseg" predict "$work/run" "$png" "$dcm" --out "$work/pred" --json >"$work/pred.json"
"$PYTHON" - "$work/pred.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1], encoding="utf-8"))
if summary["errors"] or len(summary["results"]) != 2:
    sys.exit(f"frozen predict failed: {summary}")
print("predicted:", ", ".join(f"{r['kind']} {r['shape']}" for r in summary["results"]))
PY

echo "== frozen bundle OK: $(du -sh "$DIST" | cut -f1) in $DIST; build ${build_s} s; self-test ${self_test_s} s"
