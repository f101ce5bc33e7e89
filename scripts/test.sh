#!/usr/bin/env bash
# Install the test dependencies and run the whole suite (CPU only, offscreen; the Xvfb screenshot test
# starts its own X server when Xvfb is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
export QT_QPA_PLATFORM=offscreen NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest -ra --durations=15 "$@"
