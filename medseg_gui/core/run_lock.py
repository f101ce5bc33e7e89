"""One training process per run folder: a lock file ``run.lock`` holding pid, host and start time.

Two trainings writing one run folder would mix their checkpoints, metric rows and events. The lock
is an ``flock`` on ``run.lock`` where the system has one (the kernel drops it when the process dies,
even on ``kill -9``), and the file's JSON says who holds it, for the message a refused process
prints. A lock left by a dead process on this host is stale and taken over (the caller logs it); a
lock written on another host cannot be checked from here, so it is reported with that host and the
user decides. Only rank 0 of a multi-GPU run takes the lock; the other ranks work inside it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover — Windows: the pid check alone
    fcntl = None  # type: ignore[assignment]


class RunLocked(RuntimeError):
    """Another process holds the run folder; the message says which and what to do."""


@dataclass
class LockOwner:
    pid: int | None
    host: str
    started: float | None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)) if self.started else "an unknown time"
        return f"process {self.pid} on {self.host} (since {when})"


def this_host() -> str:
    return socket.gethostname() or "unknown-host"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def read_owner(path: Path) -> LockOwner | None:
    """Who the lock file names; None when it is empty or unreadable (a crash mid-write)."""
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    started = data.get("started")
    return LockOwner(pid=pid if isinstance(pid, int) else None, host=str(data.get("host") or "unknown-host"),
                     started=float(started) if isinstance(started, (int, float)) else None)


def lock_holder(run_dir: Path | str) -> LockOwner | None:
    """Who is training in ``run_dir`` now, without taking its lock: the owner recorded in ``run.lock``
    when that process is alive on this host and still holds the kernel lock, or any owner on another
    host (which cannot be checked from here, and which ``acquire`` refuses too). None for no lock or a
    stale one (a crashed run: it can be resumed).

    Why not simply try ``acquire``: taking the lock, even for a moment, could make a training that
    starts at that instant refuse its own folder. The kernel lock is probed only once the pid says the
    holder is alive, so an idle folder is never touched."""
    path = Path(run_dir) / LOCK_FILE
    owner = read_owner(path)
    if owner is None or owner.pid is None:
        return None
    if owner.host != this_host():
        return owner
    if not pid_alive(owner.pid):
        return None
    if fcntl is None:
        return owner
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # released between our read and our open
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        # held (or locks unsupported here: then trust the live pid, as acquire does)
        return owner if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.ENOLCK) else None
    finally:
        os.close(fd)  # drops our shared lock, if we got it
    return None  # the pid is alive but not holding the lock: a reused pid, the run is not training


class RunLock:
    """``acquire()`` or raise RunLocked; ``release()`` is idempotent. ``taken_over`` names the dead
    owner of a stale lock that was replaced (for the caller's log line)."""

    def __init__(self, run_dir: Path | str):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.taken_over: LockOwner | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        for _ in range(5):  # retried only when another process replaced the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                owner = read_owner(self.path)
                if not self._os_lock(fd, owner):
                    raise RunLocked(self._busy_message(owner))
                if not _same_file(fd, self.path):
                    os.close(fd)
                    continue  # the holder released (deleted) it between our open and lock: again
                owner = read_owner(self.path)  # as left by the last holder, now that none writes it
                if owner is not None and owner.pid is not None:
                    self._check_stale(owner)
                self._write_owner(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise RunLocked(f"the run folder {self.path.parent} is being locked and released by other processes "
                        f"at the same time; try again")

    def _os_lock(self, fd: int, owner: LockOwner | None) -> bool:
        """The kernel lock where there is one; without it, a live pid on this host means busy."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                # ENOLCK and friends (some network file systems): fall back to the pid check
        return not (owner is not None and owner.host == this_host() and owner.pid is not None
                    and owner.pid != os.getpid() and pid_alive(owner.pid))

    def _check_stale(self, owner: LockOwner) -> None:
        """We hold the kernel lock, so no live process on a shared kernel does; another host's
        process may still be running (network file systems do not always share locks): refuse."""
        if owner.host != this_host():
            raise RunLocked(f"the run folder {self.path.parent} is locked by {owner.describe()}; if no training "
                            f"is running there any more, delete {self.path} and start again")
        if owner.pid != os.getpid():
            self.taken_over = owner

    def _busy_message(self, owner: LockOwner | None) -> str:
        if owner is not None and owner.host == this_host() and owner.pid is not None and not pid_alive(owner.pid):
            # its data-loading processes (forked with the lock's descriptor) are still ending
            return (f"the run folder {self.path.parent} is still held by the processes of {owner.describe()}, "
                    f"which has ended; try again in a few seconds")
        who = owner.describe() if owner is not None else "another process"
        return (f"the run folder {self.path.parent} is in use by {who}; wait for that training to end "
                f"or stop it, or choose another run folder")

    def _write_owner(self, fd: int) -> None:
        data = json.dumps({"pid": os.getpid(), "host": this_host(), "started": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    def release(self) -> None:
        """Delete the lock file (while still holding the kernel lock, so nobody reads half of it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
