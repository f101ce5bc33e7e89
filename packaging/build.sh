#!/usr/bin/env bash
# Build the one-folder desktop bundle: dist/medseg-gui/{medseg-gui,medseg,_internal/}.
# Usage: bash packaging/build.sh [extra pyinstaller args]. Works on Linux, macOS and Windows (Git Bash);
# on macOS it also produces dist/medseg-gui.app. See packaging/README.md.
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

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/medseg-gui.spec "$@"
echo "== built dist/medseg-gui in $(( $(date +%s) - start )) s ($(du -sh dist/medseg-gui | cut -f1))"
