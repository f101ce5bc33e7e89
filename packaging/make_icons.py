"""Make the Windows ``.ico`` and macOS ``.icns`` app icons from ``resources/icons/medseg.png``.

Pillow writes both formats on any platform, so the icons are generated at build time rather than
committed as binary copies that would drift from the PNG. Usage: ``python packaging/make_icons.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PNG = ROOT / "resources" / "icons" / "medseg.png"
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def make_icons(out_dir: Path, source: Path = SOURCE_PNG) -> dict[str, Path]:
    """Write ``medseg.ico`` and ``medseg.icns`` into ``out_dir``; returns their paths by suffix."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as img:
        img = img.convert("RGBA")
        if img.size[0] < 256 or img.size[1] < 256:
            raise ValueError(f"{source}: the app icon must be at least 256x256 px (it is "
                             f"{img.size[0]}x{img.size[1]}); replace it with a larger PNG")
        ico = out_dir / "medseg.ico"
        icns = out_dir / "medseg.icns"
        img.save(ico, sizes=ICO_SIZES)
        img.save(icns)
    return {"ico": ico, "icns": icns}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "icons"
    for path in make_icons(target).values():
        print(path)
