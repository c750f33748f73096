"""One writer per run directory: an OS lock (flock) on RUN/writer.lock, held by whichever command writes the run
(run, resume, report, compare). The kernel drops the lock when its holder dies, however it dies (SIGKILL
included), so a lock left by a killed process is never stale for long: the next writer takes it over, and
readers tell a live run from one whose process is gone by whether anyone holds it.

The lock file holds the holder's "PID command" while it writes and is emptied on a clean release, so a writer
that finds text there knows its predecessor was killed."""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError

log = logging.getLogger(__name__)

LOCK_FILE = "writer.lock"
RUNNERS = ("run", "resume", "compare")  # commands that move a run towards complete (report only rewrites outputs)
# A reader probes the lock by taking it for a few microseconds; a writer that meets a probe retries this long
# before it concludes that another writer holds the lock.
PROBE_GRACE_S = 1.0


@dataclass(frozen=True)
class Holder:
    pid: int | None  # None: the holder has not written its name yet
    command: str | None

    @property
    def is_self(self) -> bool:
        return self.pid == os.getpid()


_held: dict[Path, str] = {}  # this process's locks -> the command holding each, so nested writers share one


def holder(run_dir: Path) -> Holder | None:
    """Who writes the run now; None when no live process holds its lock."""
    path = Path(run_dir).resolve()
    if path in _held:
        return Holder(os.getpid(), _held[path])
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if not _try_lock(fd):
            return _read(lock_path) or Holder(None, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def writing(run_dir: Path, command: str) -> Iterator[None]:
    """Holds the run's lock for `command`; a second writer gets one line naming the holder's PID. Re-entrant
    within one process (the runner's report step, a resume that checks before it runs)."""
    path = Path(run_dir).resolve()
    if path in _held:  # the outer holder releases it
        yield
        return
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path)
        killed = _read(path / LOCK_FILE)
        if killed is not None:
            log.warning("%s: its last writer (PID %s, harness %s) was killed; taking over", path, killed.pid,
                        killed.command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        _held[path] = command
        try:
            yield
        finally:
            del _held[path]
            os.ftruncate(fd, 0)  # a clean release: the next writer has nothing to take over
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, path: Path) -> None:
    deadline = time.monotonic() + PROBE_GRACE_S
    while not _try_lock(fd):
        if time.monotonic() > deadline:
            other = _read(path / LOCK_FILE) or Holder(None, None)
            who = f"PID {other.pid}" if other.pid else "another process"
            doing = f" (harness {other.command})" if other.command else ""
            raise HarnessError(f"{path}: {who}{doing} is writing this run; wait for it to finish or stop it "
                               f"(kill {other.pid or 'PID'}), then try again")
        time.sleep(0.05)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read(lock_path: Path) -> Holder | None:
    try:
        pid, command = lock_path.read_text().split()
        return Holder(int(pid), command)
    except (OSError, ValueError):  # absent, empty (released cleanly) or being written
        return None
