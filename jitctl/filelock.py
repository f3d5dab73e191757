"""Cross-process exclusive locks and atomic file replacement (Linux/macOS).

Files that hold secrets or evidence are created with their final mode passed to ``os.open``
so they are never readable by others, not even for a moment, whatever the umask.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jitctl.errors import UsageError

_POLL_SECONDS = 0.02


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


def lock_path_for(path: Path) -> Path:
    """The sidecar lock file guarding ``path``."""
    return path.with_name(path.name + ".lock")


def open_lock_file(lock_path: Path) -> int:
    """Open (creating, 0600) a lock file, never through a symlink.

    A lock file is opened O_RDWR|O_CREAT: through a planted symlink that would create or
    open whatever file the link names, with our permissions. O_NOFOLLOW makes the last path
    component's link an error (ELOOP) instead; it is refused with UsageError (exit 2).
    """
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock_path):
            raise UsageError(
                f"refusing to use the lock file {lock_path}: it is a symlink",
                "remove the link; jitctl creates a plain lock file in its place",
            ) from None
        raise


@contextmanager
def exclusive_lock(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` for the duration of the block.

    A sidecar is locked rather than ``path`` itself because ``atomic_write`` replaces
    ``path``'s inode: a lock on the old inode would not exclude a process that opened the
    new one. The sidecar is never deleted, since unlinking a lock file lets two processes
    hold locks on two different inodes at once. The lock is released when the descriptor
    is closed, including when the process dies.

    ``timeout`` None blocks; otherwise ``TimeoutError`` (an OSError) after that many seconds.
    """
    lock_path = lock_path_for(path)
    ensure_dir(lock_path.parent)
    fd = open_lock_file(lock_path)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            errno.ETIMEDOUT,
                            f"another process has held the lock for more than {timeout:g}s",
                            str(lock_path),
                        ) from None
                    time.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the flock


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new directory entry durable. Some filesystems refuse: that is fine."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
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


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    The temporary file lives in the same directory (``os.replace`` is only atomic within a
    filesystem) and is created with ``mode`` via ``O_EXCL``, so it is never briefly
    world-readable and never follows a planted symlink. After a crash a stray
    ``.<name>.*.tmp`` may be left behind (the target itself is always whole): writers that
    hold ``exclusive_lock(path)`` call ``remove_stale_temps`` first to clear them.
    """
    directory = path.parent
    ensure_dir(directory)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
