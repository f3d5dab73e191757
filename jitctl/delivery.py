"""Handing issued credentials to the shared credentials file, so that a failure can be retried.

The file is checked before AssumeRole (a path the user can fix, or a lock someone else holds,
is found before anything is issued). If writing still fails afterwards, the request is marked
in the store as issued-but-not-delivered and `jitctl wait ID` may issue again while the
approval holds. jitctl.credentials does the writing; this module only turns its failures into
the contract's exit codes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from jitctl.errors import JitctlError, Unavailable, UsageError
from jitctl.filelock import exclusive_lock, lock_path_for

LOCK_WAIT = 10.0  # seconds to wait for another process's lock on the credentials file


def target(path: Path) -> Path:
    """The file jitctl.credentials really writes (it follows a symlinked credentials file)."""
    return Path(os.path.realpath(path))


def check_writable(path: Path, profile: str, request_id: str) -> None:
    """Raise the error delivery would hit, now: a bad profile name or a path that cannot be
    written (exit 2), a lock held past LOCK_WAIT (exit 5). Probes with a 0600 temp file."""
    from jitctl.credentials import validate_profile_name

    try:
        validate_profile_name(profile)
    except ValueError as exc:
        raise UsageError(f"--profile: {exc}", "choose another profile name") from None
    real = target(path)
    try:
        with exclusive_lock(real, timeout=LOCK_WAIT):
            probe = real.parent / f".{real.name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            os.unlink(probe)
            if real.exists():
                real.open("rb").close()  # it is read, then replaced
    except OSError as exc:
        raise delivery_error(path, exc, request_id) from None


def delivery_error(path: Path, exc: OSError, request_id: str) -> JitctlError:
    """One line with the contract's code: a held lock is 5, anything else the user fixes (2)."""
    if isinstance(exc, TimeoutError):
        lock = lock_path_for(target(path))
        return Unavailable(
            f"the credentials file {path} is locked by another process (lock file {lock})",
            f"find it with `fuser` on the lock file; `jitctl wait {request_id}` retries "
            "while the approval holds",
        )
    where = exc.filename or path
    return UsageError(
        f"cannot write the credentials file {path}: {exc.strerror or exc} ({where})",
        "fix the path or its permissions (or AWS_SHARED_CREDENTIALS_FILE), then "
        f"`jitctl wait {request_id}` delivers while the approval holds",
    )
