"""Start a private Xvfb server for tests that need a real X display (screenshots of real windows)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator


def xvfb_available() -> bool:
    return shutil.which("Xvfb") is not None


@contextlib.contextmanager
def xvfb_display(width: int = 1400, height: int = 900, depth: int = 24, timeout_s: float = 15.0) -> Iterator[str]:
    """Yield a ``:N`` display served by a fresh Xvfb; ``-displayfd`` lets Xvfb pick a free number.

    ``-nolisten tcp`` keeps it local; the server is terminated (and reaped) on exit.
    """
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}",
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], timeout_s)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            proc.kill()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"Xvfb did not start within {timeout_s:g} s: {err.strip()[-500:]}")
        yield f":{number}"
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


XVFB_MISSING = ("Xvfb is not installed (apt-get install xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 "
                "libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0)")


def run_capture(script: str, args: list[str], root, tmp_path, timeout_s: float = 180,
                size: tuple[int, int] = (1400, 900)) -> subprocess.CompletedProcess:
    """Run a capture script (``python -c``) on a fresh Xvfb with Qt's xcb platform."""
    import sys

    with xvfb_display(*size) as display:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(root),
                   XDG_RUNTIME_DIR=str(tmp_path))
        return subprocess.run([sys.executable, "-c", script, *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=timeout_s)


def load_screenshot(path, shape: tuple[int, int, int]):
    """The saved PNG as float RGB pixels, checked to be a rendered window (not blank, many colours)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert pixels.shape == shape
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "too few colours for a rendered window"
    return pixels
