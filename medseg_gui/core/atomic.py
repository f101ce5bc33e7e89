"""Atomic file writes: a crash or a full disk never leaves a half-written config, checkpoint or export.

Temp files and folders are named ``.<target name>.<random>.tmp`` beside their target, so a rename
puts them in place and a sweep (``remove_stale_temps``) can recognise the ones a killed process left.
What ends up in place gets the permissions the user's umask implies (``mkstemp``/``mkdtemp`` alone
would give 0600/0700, unreadable to colleagues on a shared server), or keeps those of the file it
replaces.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)
TEMP_SUFFIX = ".tmp"
# mkstemp/mkdtemp draw 8 characters from [a-z0-9_]; anything else is not one of ours
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc), because
    setting it for a moment would race with other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)  # a common value, so a thread racing us gets no world-writable file
        os.umask(mask)
    return mask


def umask_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` (0666) or ``mkdir()`` (0777) would give under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def _final_mode(path: Path, directory: bool) -> int:
    """Keep the permissions of what we replace (the user may have set them); else follow the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return umask_mode(directory)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain (torch wraps the OSError of a file object)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_error_path(exc: BaseException) -> str | None:
    """The file a disk-full error was writing, where the chain records it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS and current.filename:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return None


def name_write_error(exc: OSError, path: Path | str) -> OSError:
    """Record the file being written on an OSError raised by ``write()`` (which names none)."""
    if exc.filename is None:
        exc.filename = str(path)
    return exc


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename over ``path``.

    The temp file lives in the same folder so ``os.replace`` is a rename, not a copy. On any error
    (a full disk, Ctrl-C) the temp file is removed and ``path`` keeps its previous content; a
    disk-full error names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _final_mode(path, directory=False))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            exc.filename = str(path)  # the user's file, not our temp name
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def make_temp_dir(prefix: str, suffix: str = "", dir: Path | str | None = None) -> Path:  # noqa: A002
    """``tempfile.mkdtemp`` with the permissions the umask implies: ``mkdtemp`` alone makes a folder
    private (0700), and what is written in it may end up where colleagues must read it."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dir))
    os.chmod(tmp, umask_mode(directory=True))
    return tmp


def temp_dir_beside(dst: Path | str) -> Path:
    """A fresh temp folder beside ``dst``, for a folder written whole and renamed into place."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return make_temp_dir(prefix=f".{dst.name}.", suffix=TEMP_SUFFIX, dir=dst.parent)


def is_our_temp_name(name: str) -> bool:
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files/folders of OUR naming pattern directly in ``folder`` (left by a killed
    process). Call it only on a folder we own and hold (a locked run folder): there no other writer
    can be mid-write. Returns what was removed; errors are ignored (it is housekeeping)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_our_temp_name(entry.name):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed
