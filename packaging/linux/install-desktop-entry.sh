#!/usr/bin/env bash
# Add medseg-gui to the desktop's application menu for the current user (no root needed).
#   bash packaging/linux/install-desktop-entry.sh [BUNDLE_DIR]     install (default: dist/medseg-gui)
#   bash packaging/linux/install-desktop-entry.sh --uninstall      remove it again
# With a bundle folder, the entry starts that folder's medseg-gui by absolute path; with
# BUNDLE_DIR=pip it starts the `medseg-gui` found on PATH (a `pip install` of the project).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
icons="$data/icons/hicolor"

if [[ "${1:-}" == "--uninstall" ]]; then
  rm -f "$apps/medseg-gui.desktop" "$icons/256x256/apps/medseg-gui.png" "$icons/scalable/apps/medseg-gui.svg"
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
  echo "removed the medseg-gui menu entry"
  exit 0
fi

bundle="${1:-$root/dist/medseg-gui}"
if [[ "$bundle" == "pip" ]]; then
  command -v medseg-gui >/dev/null || { echo "medseg-gui is not on PATH: run 'pip install .' first" >&2; exit 1; }
  exec_path="medseg-gui"
else
  bundle="$(cd "$bundle" 2>/dev/null && pwd)" || { echo "$1: no such folder; build it with packaging/build.sh" >&2; exit 1; }
  exec_path="$bundle/medseg-gui"
  [[ -x "$exec_path" ]] || { echo "$exec_path: not found or not executable; build it with packaging/build.sh" >&2; exit 1; }
fi

mkdir -p "$apps" "$icons/256x256/apps" "$icons/scalable/apps"
cp "$root/resources/icons/medseg.png" "$icons/256x256/apps/medseg-gui.png"
cp "$root/resources/icons/medseg.svg" "$icons/scalable/apps/medseg-gui.svg"
# Quote the path per the Desktop Entry spec (spaces are allowed inside double quotes).
quoted="\"${exec_path//\"/\\\"}\""
sed -e "s|^Exec=.*|Exec=$quoted %f|" -e "s|^TryExec=.*|TryExec=$exec_path|" \
  "$root/resources/medseg-gui.desktop" >"$apps/medseg-gui.desktop.tmp"
mv "$apps/medseg-gui.desktop.tmp" "$apps/medseg-gui.desktop"
chmod 644 "$apps/medseg-gui.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$icons" || true
echo "installed $apps/medseg-gui.desktop -> $exec_path"
