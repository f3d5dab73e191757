"""The core of `jitctl credential-process ROLE`, run by AWS SDKs from an AWS config profile:

    [profile prod-ro]
    credential_process = jitctl credential-process prod-readonly

It hands the SDK the caller's cached latest grant for ROLE under the current config
(jitctl.credentials.owner: who the caller is comes from sts:GetCallerIdentity on their own
credentials), or fails at once with exit 4. An SDK runs it unattended and re-runs it before
every expiry, so it never prompts, never waits for a person, and asks AWS nothing else and
PagerDuty nothing: getting new credentials is `jitctl request`.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl.credentials.cache import MIN_LEFT, CredentialCache, fresh
from jitctl.credentials.formats import credential_process_json
from jitctl.errors import TimedOut, UsageError
from jitctl.timeutil import format_duration, rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment


GUARD = "JITCTL_IN_CREDENTIAL_PROCESS"
PROFILE_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def not_within_itself() -> None:
    """credential-process asks STS who the caller is with the caller's own AWS credentials.
    An SDK that runs it for a profile named by AWS_PROFILE passes that variable on: the
    profile whose credential_process is this very command. It is set aside here, so the
    caller's usual credentials (environment, [default], SSO) answer; anything else that would
    run this command again (a chain of such profiles) meets the mark and stops (exit 2)."""
    if os.environ.get(GUARD):
        raise UsageError(
            "jitctl credential-process needs your own AWS credentials to tell who you are, "
            "and the profile in use runs jitctl credential-process itself",
            "give the SDK that profile by name and keep your usual credentials as the default",
        )
    for name in PROFILE_VARIABLES:
        if runs_credential_process(os.environ.get(name)):
            del os.environ[name]
    os.environ[GUARD] = "1"  # inherited by anything the SDK starts for our STS call


def runs_credential_process(profile: str | None) -> bool:
    """Whether the AWS config's ``profile`` gets its credentials from `jitctl credential-process`."""
    import configparser

    from jitctl.credentials.profiles import aws_config_path

    if not profile:
        return False
    ini = configparser.RawConfigParser()
    try:
        ini.read(aws_config_path(os.environ), encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False
    section = "default" if profile == "default" else f"profile {profile}"
    command = ini.get(section, "credential_process", fallback="")
    return "credential-process" in command and "jitctl" in command


class NoFreshCredentials(TimedOut):
    """Nothing cached for the role, or what is cached expires too soon (exit 4: expired)."""


def credential_process(
    role: str, *, now: datetime, cache: CredentialCache, min_left: timedelta = MIN_LEFT
) -> str:
    """The credential_process JSON for ``role``'s cached grant while it has ``min_left`` left.

    Raises NoFreshCredentials with one line saying why and which command fixes it; the SDK
    shows that line (our stderr) to the user.
    """
    found = cache.lookup(role)
    grant = found.grant
    if grant is not None and fresh(grant, now, min_left):
        return credential_process_json(grant.creds)
    if grant is None:
        why = "none cached"
        if found.problems:
            why += "; " + "; ".join(found.problems)
    elif grant.creds.expiration is None:
        why = "the cached ones have no expiration"
    elif grant.creds.expiration <= now:
        why = f"expired at {rfc3339(grant.creds.expiration)}"
    else:
        why = (
            f"they expire at {rfc3339(grant.creds.expiration)}, "
            f"less than {format_duration(min_left)} from now"
        )
    raise NoFreshCredentials(
        f"no fresh jitctl credentials for {role} ({why}); "
        f'run: jitctl request {shlex.quote(role)} --reason "..."'
    )


def check_known_role(env: Environment, role: str) -> None:
    """UsageError (exit 2, with the closest name) when ``role`` is not in the policy. Only on
    the failure path, and only from what is at hand: the local policy in direct mode, the
    broker's role list in broker mode. When neither can be read, nothing is added: the cache
    miss (exit 4) stands."""
    from jitctl.errors import JitctlError
    from jitctl.policy.load import unknown_role

    try:
        if env.config.broker.client:
            known = {str(r["role"]) for r in env.service.roles()}
        else:
            known = set(env.policy.roles)
    except JitctlError:
        return
    if role not in known:
        raise unknown_role(role, known)
