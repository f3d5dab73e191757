"""Handing issued credentials over on the caller's machine, so that a failure can be retried.

The same in direct and broker mode: the core (here or in the broker) issues, this writes. The
file is checked before anything is requested or issued (a path the user can fix, or a lock
someone else holds). If writing still fails afterwards, the core is told, marks the request
issued-but-not-delivered, and `jitctl wait ID` may issue again while the approval holds.
jitctl.credentials.profiles does the writing; this module turns its failures into the contract's codes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from jitctl.errors import DISK_FULL, JitctlError, Unavailable, UsageError
from jitctl.filelock import OPEN_FLAGS, exclusive_lock, lock_path_for, require_regular

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.models import AccessRequest, Issued

LOCK_WAIT = 10.0  # seconds to wait for another process's lock on the credentials file


def target(path: Path) -> Path:
    """The file jitctl.credentials.profiles really writes (it follows a symlinked credentials file)."""
    return Path(os.path.realpath(path))


def check_writable(
    path: Path, profile: str, request_id: str | None = None, *, config: Path | None = None
) -> None:
    """Raise the error delivery would hit, now: a bad profile name, a credentials or AWS config
    file (``config``) that is not a regular file, a profile holding keys jitctl did not write,
    or a path that cannot be written (exit 2); a lock held past LOCK_WAIT (exit 5). Probes
    with a 0600 temp file."""
    from jitctl.credentials.profiles import check_ours, validate_profile_name

    try:
        validate_profile_name(profile)
    except ValueError as exc:
        raise UsageError(f"--profile: {exc}", "choose another profile name") from None
    require_regular(path, "the credentials file")  # links followed; named as the user wrote it
    if config is not None:
        require_regular(config, "the AWS config file")
    real = target(path)
    try:
        check_ours(real, profile)
        with exclusive_lock(real, timeout=LOCK_WAIT):
            probe = real.parent / f".{real.name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o600))
            os.unlink(probe)
            if real.exists():
                real.open("rb").close()  # it is read, then replaced
    except OSError as exc:
        raise delivery_error(path, exc, request_id) from None


def delivery_error(path: Path, exc: OSError, request_id: str | None) -> JitctlError:
    """One line with the contract's code: a held lock is 5, anything else the user fixes (2)."""
    retry = (
        f"`jitctl wait {request_id}` delivers while the approval holds"
        if request_id
        else "then request again"
    )
    if isinstance(exc, TimeoutError):
        lock = lock_path_for(target(path))
        return Unavailable(
            f"the credentials file {path} is locked by another process (lock file {lock})",
            f"find it with `fuser` on the lock file; {retry}",
        )
    if exc.errno in DISK_FULL:  # the machine's to fix, not the config's: exit 5
        return Unavailable(
            f"cannot write the credentials file {path}: {exc.strerror or exc}",
            f"free disk space; {retry}",
        )
    where = exc.filename or path
    return UsageError(
        f"cannot write the credentials file {path}: {exc.strerror or exc} ({where})",
        f"fix the path or its permissions (or AWS_SHARED_CREDENTIALS_FILE); {retry}",
    )


def profile_region(env: Environment, role_region: str | None) -> str | None:
    """The jit profile's region: the role's `region` in the policy, else the caller's own
    (what boto3 would use for them now), else none (the profile then has no region)."""
    from jitctl.aws import caller_region
    from jitctl.policy.schema import REGION

    if role_region and REGION.fullmatch(role_region):  # from the broker too: checked again
        return role_region

    def configured() -> str | None:
        try:
            region: str | None = env.aws.session().region_name
            return region
        except JitctlError:  # no usable AWS config: the caller has no region either
            return None

    caller = caller_region(env.environ, configured)
    return caller if isinstance(caller, str) and REGION.fullmatch(caller) else None


def set_region(env: Environment, profile: str, role_region: str | None) -> None:
    """Give the profile a region in the AWS config file, so `aws --profile jit-ROLE ...` works
    without one. The credentials are written already: a failure here is a warning."""
    from jitctl.credentials import profiles

    region = profile_region(env, role_region)
    if region is None:
        return
    path = profiles.aws_config_path(env.environ)
    try:
        profiles.write_config_region(path, profile, region)
    except (OSError, ValueError, UsageError) as exc:  # UsageError: no longer a regular file
        if env.on_warning is not None:
            env.on_warning(f"could not set region {region} for profile {profile} in {path}: {exc}")


def default_profile(path: Path, req: AccessRequest) -> str:
    """Where credentials go without --profile: an extension's to the profile that holds its
    grant (so whatever reads that profile gets the new session), else jit-ROLE."""
    return grant_profile(path, req.extends, req.role) if req.extends else f"jit-{req.role}"


def grant_profile(path: Path, grant_id: str, role: str) -> str:
    """The profile that holds grant ``grant_id`` (its first, if several), else jit-ROLE."""
    from jitctl.credentials.profiles import profiles_for_request

    try:
        held = profiles_for_request(path, grant_id)
    except (OSError, ValueError, JitctlError):  # unreadable: the delivery says why
        held = []
    return held[0] if held else f"jit-{role}"


def deliver(
    env: Environment,
    issued: Issued,
    *,
    profile: str | None,
    write_profile: bool,
    cache: bool,
    on_failure: Callable[[str], None],
) -> str | None:
    """Write the credentials where asked; returns the profile name written, if any.

    ``write_profile`` puts them in the shared credentials file; ``cache`` keeps them for
    `jitctl credential-process` (keyring or a 0600 file). `jitctl exec` does neither. If the
    file cannot be written, ``on_failure`` tells the core (so `jitctl wait ID` may deliver
    again while the approval holds) and the error says how to fix it."""
    from jitctl.credentials import profiles

    req = issued.request
    grant = req.extends or req.request_id  # an extension's credentials stand for its grant
    written = None
    if write_profile:
        path = profiles.shared_credentials_path(env.environ)
        written = profile or default_profile(path, req)
        extra = {profiles.MARKER: grant}
        try:
            profiles.write_profile(
                path, written, issued.keys(), extra=extra, only_ours=True
            )
        except (OSError, UsageError) as exc:  # UsageError: changed since check_writable
            error = delivery_error(path, exc, req.request_id) if isinstance(exc, OSError) else exc
            on_failure(error.message)
            raise error from None
        set_region(env, written, issued.region)
    if cache:
        env.credential_cache.store(req.role, issued.keys(), grant, person=req.requester)
    return written
