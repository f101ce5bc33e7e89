#!/usr/bin/env bash
# The frozen command line on the lent GPU machine (no internet): install the carried wheels, build the
# CUDA bundle (MEDSEG_BUNDLE=cli), then size, start-up, frozen training on the GPU and frozen predict.
# From the repository root, carrying .wheels/:
#   bash benchmarks/bench_frozen_gpu.sh [bench_frozen_gpu.py options, e.g. --budget-s 570 --no-build]
# Writes benchmarks/results/bench_frozen_gpu.json (always) and benchmarks/results/bench_frozen_gpu_logs/.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source benchmarks/device_setup.sh
exec python3 benchmarks/bench_frozen_gpu.py "$@"
