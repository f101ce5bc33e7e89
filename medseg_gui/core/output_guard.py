"""Never lose the user's work: what a command may replace, and one-line reasons when it may not.

Every writer outside a run folder (model export, ``medseg predict``, the viewer's export, dataset
imports, the demo dataset, every ``--save FILE``) asks here before it writes. The rule is the same
everywhere, so the CLI, the GUI and the core cannot drift apart:

* an existing **file** is replaced only when the user said so (``--force`` / ``--overwrite``, or the
  GUI's own "replace?" question), and never when it is a folder, a device or a pipe;
* an existing **folder** is replaced only with ``--force`` *and* only when it is recognisably an
  earlier output of ours (a marker file we write, and nothing foreign beside it) — a dataset, a run or
  a folder holding other things is never deleted, whatever the flag;
* a destination is never the source, inside it, or around it.

Refusals are :class:`OutputRefused` whose text names the path, the reason and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medseg_gui.core.run_lock import pid_alive, this_host


class OutputRefused(ValueError):
    """A write that would replace or damage something we did not write; the message says what to do."""


# ------------------------------------------------------------------------------------ recognising ours

def read_marker(folder: Path, marker: str) -> dict | None:
    """The JSON object in ``folder/marker``, or None when it is missing or not ours (unreadable, not a dict)."""
    path = Path(folder) / marker
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def foreign_entries(folder: Path, allowed: Collection[str]) -> list[str]:
    """Names in ``folder`` that we would not have written there (sub-folders, hidden files, others)."""
    out = []
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        if entry.name not in allowed or entry.is_symlink() or not entry.is_file():
            out.append(entry.name + ("/" if entry.is_dir() else ""))
    return out


def is_our_output(folder: Path, marker: str, allowed: Collection[str],
                  looks_right: Callable[[dict], bool] = lambda meta: True) -> bool:
    """Whether ``folder`` is an earlier output of ours: the marker reads back and nothing else is there."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    meta = read_marker(folder, marker)
    return meta is not None and looks_right(meta) and not foreign_entries(folder, allowed)


# ---------------------------------------------------------------------------------- where we may write

def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()  # links followed: a link to the run is the run


def check_not_overlapping(dst: Path, sources: Iterable[Path], *, what: str = "the destination") -> None:
    """Refuse a destination equal to, inside, or holding any of ``sources`` (replacing it would delete them)."""
    target = _resolved(dst)
    for source in sources:
        src = _resolved(source)
        if target == src:
            raise OutputRefused(f"{dst}: {what} is the source {source} itself — choose a new folder elsewhere")
        if src in target.parents:
            raise OutputRefused(f"{dst}: {what} is inside the source {source} — choose a folder outside it")
        if target in src.parents:
            raise OutputRefused(f"{dst}: {what} holds the source {source}; replacing it would delete the "
                                "source — choose a new folder elsewhere")


def is_empty_folder(path: Path) -> bool:
    """An existing, empty, real folder: replacing it loses nothing."""
    path = Path(path)
    try:
        return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None
    except OSError:
        return False


def check_folder_target(dst: Path, *, force: bool, is_ours: Callable[[Path], bool], ours_name: str,
                        sources: Iterable[Path] = (), ours_files: Collection[str] = (),
                        flag: str = "--force") -> None:
    """May a folder output be written to ``dst``? Raises :class:`OutputRefused` when not.

    ``is_ours(dst)`` recognises an earlier output (e.g. a model export), which ``force`` may replace;
    ``ours_name`` names it in messages and ``ours_files`` are the names it holds (to list the others).
    An empty folder is fine: replacing it loses nothing.
    """
    dst = Path(dst)
    check_not_overlapping(dst, sources)
    if (not dst.exists() and not dst.is_symlink()) or is_empty_folder(dst):
        return
    if dst.is_symlink():
        raise OutputRefused(f"{dst}: is a link to {os.path.realpath(dst)}; it is never replaced — "
                            "choose a new folder")
    if not dst.is_dir():
        raise OutputRefused(f"{dst}: already exists and is not a folder — choose another destination")
    if not force:
        raise OutputRefused(f"{dst}: already exists — choose another destination, or pass {flag} to replace "
                            f"an earlier {ours_name}")
    if not is_ours(dst):
        try:
            extra = foreign_entries(dst, ours_files)
        except OSError:
            extra = []
        shown = ", ".join(extra[:3]) + (", …" if len(extra) > 3 else "")
        raise OutputRefused(f"{dst}: not an earlier {ours_name}" + (f" (it holds {shown})" if shown else "")
                            + f"; {flag} only replaces an earlier {ours_name} — choose a new folder")


def check_file_target(path: Path, *, replace: bool, flag: str = "--force") -> None:
    """May a file be written at ``path``? Only a regular file may be replaced, and only when asked."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise OutputRefused(f"{path}: is a folder — choose a file name")
    if not path.is_file():
        raise OutputRefused(f"{path}: exists and is not a regular file — choose another name")
    if not replace:
        raise OutputRefused(f"{path}: already exists — choose another name or folder, or pass {flag} to "
                            "replace it")


def file_target_problem(path: Path | str, *, replace: bool, flag: str = "--force") -> str:
    """:func:`check_file_target` as a sentence ('' when the write may go ahead), for ``--save FILE``
    options that must refuse before minutes of work, not after."""
    try:
        check_file_target(Path(path).expanduser(), replace=replace, flag=flag)
    except OutputRefused as exc:
        return str(exc)
    return ""


def unique_name(stem: str, taken: Collection[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``… — the first one not in ``taken`` (compared case-blind, since
    macOS and Windows file systems would make ``X`` and ``x`` one file)."""
    lowered = {t.lower() for t in taken}
    if stem.lower() not in lowered:
        return stem
    n = 2
    while f"{stem}_{n}".lower() in lowered:
        n += 1
    return f"{stem}_{n}"


# ------------------------------------------------------------------------------------- reading inputs

def not_a_regular_file(path: Path) -> str:
    """Why ``path`` cannot be read as an image file ('' when it can). Never opens it: opening a FIFO
    blocks until someone writes to it, and reading a device can run forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    if stat.S_ISFIFO(mode):
        return "is a pipe (FIFO), not an image file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not an image file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not an image file"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return ""


# ------------------------------------------------------------------------------------------ OS errors

_OS_REASONS = {  # EDQUOT first: where a system lacks it, ENOSPC's entry below wins
    getattr(errno, "EDQUOT", errno.ENOSPC): ("the disk quota is used up", "free some space or choose another drive"),
    errno.ENOSPC: ("the disk is full", "free some space or choose another drive"),
    errno.EROFS: ("the drive is read-only", "choose a folder on a writable drive"),
    errno.EACCES: ("permission denied", "choose a folder you may write to"),
    errno.EPERM: ("permission denied", "choose a folder you may write to"),
    errno.ENOTEMPTY: ("something else was written there meanwhile", "choose a new folder"),
    errno.EEXIST: ("a file of that name is in the way", "choose another path"),
    errno.ENOTDIR: ("part of the path is a file, not a folder", "choose another path"),
}


def os_error_line(exc: OSError, path: Path | str | None = None) -> str:
    """One sentence for a failed read or write: which file, why (disk full, read-only, no permission),
    and what to do — instead of a traceback."""
    where = exc.filename or path or "output"
    if path is not None and Path(str(where)).name.startswith("."):  # our hidden staging name: say the target
        where = path
    reason, hint = _OS_REASONS.get(exc.errno or 0, (exc.strerror or str(exc), "check the path and the drive"))
    return f"{where}: {reason} — {hint}"


# -------------------------------------------------------------------------------------------- locking

def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


@contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold ``lock_path`` (created exclusively, holding ``pid host``) while writing ``what``.

    A second writer refuses with :class:`OutputRefused`. A lock left by a process that died on this
    host is taken over; one from another host is trusted (we cannot see its processes). Short-lived
    writers (an import) need no kernel lock: ``core.run_lock`` is the one for long training runs.
    """
    lock_path = Path(lock_path)
    host = this_host()
    for _attempt in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid_text, _, owner = lock_path.read_text(encoding="utf-8").strip().partition(" ")
                pid = int(pid_text)
            except (OSError, ValueError):  # empty: its writer may be between create and write
                pid, owner = -1, host
            fresh = pid < 0 and _age_s(lock_path) < 10.0
            if owner == host and not fresh and not pid_alive(pid):
                lock_path.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            who = f"pid {pid} on {owner}" if pid > 0 else "starting up"
            raise OutputRefused(f"{what}: another process ({who}) is writing it "
                                f"now — wait for it to finish or choose another folder (if none is running, "
                                f"delete {lock_path})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {host}\n")
        break
    else:  # pragma: no cover - a third writer raced us twice
        raise OutputRefused(f"{what}: another process is writing it now — try again")
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
