"""Cross-process exclusive locks and atomic file replacement, on Linux, macOS and Windows.

Locks come from the ``filelock`` package (``flock`` on Unix, ``LockFileEx`` on Windows), always
on a separate ``<name>.lock`` file, never on the data file. Files that hold secrets or evidence
are created with their final mode passed to ``os.open`` so they are never readable by others,
not even for a moment, whatever the umask.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jitctl.errors import UsageError

_POLL_SECONDS = 0.02
_WINDOWS = sys.platform == "win32"
# Flags that exist on one OS only: inherited by no child process, and no newline translation.
OPEN_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# Windows refuses to replace a file another process has open (a reader, an indexer, an
# antivirus scan): PermissionError, gone a moment later. POSIX never does that, so there a
# PermissionError is final. 8 attempts, doubling from 10 ms, give up after ~1.3 s.
REPLACE_ATTEMPTS = 8 if _WINDOWS else 1
_REPLACE_FIRST_DELAY = 0.01

Replace = Callable[[Path, Path], None]
"""Rename ``src`` over ``dst`` atomically, as ``os.replace`` does (tests pass a busy target)."""


def ensure_dir(directory: Path, mode: int = 0o700) -> None:
    """Create ``directory`` and any missing parents with ``mode``; leave existing ones alone.

    ``os.makedirs`` gives intermediate directories the default mode, so each missing level
    is made here with ``mode``. Existing directories are not chmod-ed: they are the user's.
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, mode)
        except FileExistsError:  # another process made it first: fine
            pass


# What a path that is not a regular file is, for the one-line refusal.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def require_regular(path: Path, what: str = "the file") -> None:
    """Refuse (exit 2) a path that exists and is not a regular file, after following links.

    jitctl writes by replacing the file, so a device there (``/dev/null``) would become a file
    of secrets, a FIFO would block a reader, and a lock would appear beside either. A path that
    does not exist yet is fine (jitctl creates it); one that cannot be looked at is left to the
    read or write that follows, which says why in its own words.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise UsageError(
        f"{what} {path} is {kind}: jitctl only reads and writes regular files",
        "point it at a regular file (or a link to one), or at a path that does not exist yet",
    )


# One in-process lock per lock file: the threads of one process (the broker's) queue here,
# blocking, so at most one of them at a time ever waits on the file lock, whose wait polls.
# A thread that already holds it goes straight on to the file lock, as it did before.
class _ProcessLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None

    def acquire(self, timeout: float | None) -> bool:
        """True when taken (release it); False when this thread holds it already."""
        if self.owner == threading.get_ident():
            return False
        if not self.lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(errno.ETIMEDOUT, "timed out")
        self.owner = threading.get_ident()
        return True

    def release(self) -> None:
        self.owner = None
        self.lock.release()


_PROCESS_LOCKS: dict[str, _ProcessLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(lock_path: Path) -> _ProcessLock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(os.path.abspath(lock_path), _ProcessLock())


def _forget_process_locks() -> None:
    """A forked child starts with no thread holding any of them (a copy may be held)."""
    global _PROCESS_LOCKS_GUARD
    _PROCESS_LOCKS_GUARD = threading.Lock()
    _PROCESS_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_process_locks)


def lock_path_for(path: Path) -> Path:
    """The sidecar lock file guarding ``path``."""
    return path.with_name(path.name + ".lock")


def _symlink_refused(lock_path: Path) -> UsageError:
    return UsageError(
        f"refusing to use the lock file {lock_path}: it is a symlink",
        "remove the link; jitctl creates a plain lock file in its place",
    )


@contextmanager
def exclusive_lock(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the duration of the block.

    A sidecar is locked rather than ``path`` itself because ``atomic_write`` replaces
    ``path``'s inode (and Windows would refuse to replace a file held open for a lock). The
    sidecar is never deleted (``preserve_lock_file``), since unlinking a lock file lets two
    processes hold locks on two different inodes at once; the OS releases the lock when the
    process dies. A ``path`` that exists and is not a regular file is refused (exit 2,
    ``require_regular``) before the sidecar is made. A lock file that is a symlink is refused
    (exit 2): through a planted link, opening it would create or open whatever file the link
    names. ``filelock`` opens it with ``O_NOFOLLOW`` (Unix) or refuses reparse points
    (Windows), so a link planted after the check fails too. No fallback to ``filelock``'s soft (existence) locks: where the
    filesystem cannot lock, jitctl fails rather than half-locks.

    ``timeout`` None blocks; otherwise ``TimeoutError`` (an OSError) after that many seconds.
    """
    require_regular(path)  # before the sidecar exists: no lock beside a device or a FIFO
    lock_path = lock_path_for(path)
    ensure_dir(lock_path.parent)
    if os.path.islink(lock_path):
        raise _symlink_refused(lock_path)
    started = time.monotonic()
    in_process = _process_lock(lock_path)
    try:
        taken = in_process.acquire(timeout)
    except TimeoutError:
        raise _timed_out(lock_path, timeout) from None
    try:
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        with _file_lock(lock_path, left, timeout):
            yield
    finally:
        if taken:
            in_process.release()


@contextmanager
def _file_lock(lock_path: Path, left: float | None, timeout: float | None) -> Iterator[None]:
    """The cross-process half of ``exclusive_lock``: ``filelock`` on the sidecar."""
    import filelock  # ~20 ms: only commands that write a file pay for it

    lock = filelock.FileLock(
        lock_path,
        timeout=-1 if left is None else left,
        mode=0o600,
        poll_interval=_POLL_SECONDS,
        fallback_to_soft=False,
        preserve_lock_file=True,
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise _timed_out(lock_path, timeout) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock_path):
            raise _symlink_refused(lock_path) from None
        raise
    try:
        yield
    finally:
        lock.release()


def _timed_out(lock_path: Path, timeout: float | None) -> TimeoutError:
    return TimeoutError(
        errno.ETIMEDOUT,
        f"another process has held the lock for more than {timeout or 0:g}s",
        str(lock_path),
    )


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new directory entry durable. Some filesystems refuse: that is fine.

    Windows cannot open a directory as a file; NTFS journals the rename itself.
    """
    if _WINDOWS:
        return
    fd = os.open(directory, os.O_RDONLY | OPEN_FLAGS)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked; loop until everything is out."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _temp_pattern(path: Path) -> re.Pattern[str]:
    """The names ``atomic_write`` gives its temporary files for ``path`` (see ``_temp_path``)."""
    return re.compile(rf"\.{re.escape(path.name)}\.[0-9]+\.[0-9a-f]{{8}}\.tmp")


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def remove_stale_temps(path: Path) -> int:
    """Delete the temporary files earlier writers of ``path`` left behind; return how many.

    A writer killed between creating its temp and renaming it leaves a full copy of what it
    was writing (credentials, for the shared credentials file) in a stray 0600 file. Call
    this only while holding ``exclusive_lock(path)``: every writer of ``path`` holds that lock
    from before it creates its temp until after the rename, so any temp seen then is dead.
    Only regular files whose name has exactly atomic_write's shape are touched.
    """
    pattern = _temp_pattern(path)
    removed = 0
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return 0
    for name in names:
        candidate = path.parent / name
        try:
            if pattern.fullmatch(name) and stat.S_ISREG(os.lstat(candidate).st_mode):
                candidate.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _os_replace(src: Path, dst: Path) -> None:
    os.replace(src, dst)  # looked up at call time, so a test's crash hook reaches it


def replace_with_retry(
    src: Path,
    dst: Path,
    *,
    replace: Replace = _os_replace,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = REPLACE_ATTEMPTS,
) -> None:
    """``replace(src, dst)``, tried again while it raises PermissionError, at most ``attempts``
    times in all (waiting 10 ms, 20 ms, ... between); the last PermissionError is raised."""
    delay = _REPLACE_FIRST_DELAY
    for attempt in range(1, attempts + 1):
        try:
            replace(src, dst)
            return
        except PermissionError:
            if attempt >= attempts:
                raise
        sleep(delay)
        delay *= 2


def atomic_write(
    path: Path, data: bytes, mode: int = 0o600, *, replace: Replace | None = None
) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    The temporary file lives in the same directory (``os.replace`` is only atomic within a
    filesystem) and is created with ``mode`` via ``O_EXCL``, so it is never briefly
    world-readable and never follows a planted symlink. After a crash a stray
    ``.<name>.*.tmp`` may be left behind (the target itself is always whole): writers that
    hold ``exclusive_lock(path)`` call ``remove_stale_temps`` first to clear them. The rename
    is ``replace`` (default ``replace_with_retry``, which waits while Windows refuses); when it
    fails, the temp file is removed and the error raised.
    """
    require_regular(path)  # never replace a device (/dev/null) with a file of secrets
    directory = path.parent
    ensure_dir(directory)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        (replace or replace_with_retry)(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
