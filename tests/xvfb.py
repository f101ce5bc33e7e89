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
