"""One exception root carrying the contract's exit codes.

Core modules raise these; the single handler in ``jitctl.cli.main`` turns them into one
line on stderr and the exit code. Anything else escaping is a bug (exit 1).
"""

from __future__ import annotations

import errno
from enum import IntEnum

# errno values that mean the disk (or a quota, or a file size limit) is full: exit 5, the
# machine's to fix, never a bug's exit 1.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class ExitCode(IntEnum):
    """Exit codes from shared/CONTRACT.md. Runbooks depend on these numbers."""

    OK = 0
    ERROR = 1  # unexpected error: a bug
    USAGE = 2  # bad flag, unknown role, invalid policy, no token, unmapped caller
    DENIED = 3  # the policy forbids it, an approver denied it, the caller may not approve
    TIMEOUT = 4  # timed out, or the request expired before a decision
    UNAVAILABLE = 5  # PagerDuty or AWS unavailable and no safe way on
    AUDIT_FAILED = 6  # the audit log failed verification
    INTERRUPTED = 130  # interrupted; a pending request of this run is cancelled


class JitctlError(Exception):
    """Root of every expected error. ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(JitctlError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The config file or environment is wrong."""


class PolicyError(UsageError):
    """A policy file is invalid. The message names the file, the role and the key."""


class IdentityError(UsageError):
    """The caller's AWS principal maps to no person."""


class TokenError(UsageError):
    """No PagerDuty token could be found."""


class Denied(JitctlError):
    exit_code = ExitCode.DENIED


class TimedOut(JitctlError):
    exit_code = ExitCode.TIMEOUT


class Unavailable(JitctlError):
    """PagerDuty, AWS or the audit sink cannot be trusted right now."""

    exit_code = ExitCode.UNAVAILABLE


class AwsUnavailable(Unavailable):
    pass


class PagerDutyUnavailable(Unavailable):
    pass


class AuditError(JitctlError):
    """The audit log could not be written. Nothing is issued without a record."""

    exit_code = ExitCode.UNAVAILABLE


class AuditTampered(JitctlError):
    exit_code = ExitCode.AUDIT_FAILED


class Interrupted(JitctlError):
    exit_code = ExitCode.INTERRUPTED
