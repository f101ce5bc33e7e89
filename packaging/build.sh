#!/usr/bin/env bash
# Build the one-folder desktop bundle: dist/medseg-gui/{medseg-gui,medseg,_internal/}.
# Usage: bash packaging/build.sh [extra pyinstaller args]. Works on Linux, macOS and Windows (Git Bash);
# on macOS it also produces dist/medseg-gui.app. See packaging/README.md.
# MEDSEG_BUNDLE=cli: the command line alone (no Qt needed; the GPU build machine, docs/gpu_build.md).
# MEDSEG_DISTPATH / MEDSEG_WORKPATH: where the bundle and PyInstaller's work files go (dist, build/pyinstaller).
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The analysis imports pyqtgraph/PySide6 in helper processes; without a display Qt would abort.
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
PYTHON="${PYTHON:-python}"

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
  echo "== installing PyInstaller (the [package] extra)"
  "$PYTHON" -m pip install -q "pyinstaller>=6.5"
fi
"$PYTHON" -c "import medseg_gui" 2>/dev/null || "$PYTHON" -m pip install -q -e .

DISTPATH="${MEDSEG_DISTPATH:-dist}"
start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DISTPATH" --workpath "${MEDSEG_WORKPATH:-build/pyinstaller}" packaging/medseg-gui.spec "$@"
echo "== built $DISTPATH/medseg-gui in $(( $(date +%s) - start )) s ($(du -sh "$DISTPATH/medseg-gui" | cut -f1))"
