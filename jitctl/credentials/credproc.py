"""The core of `jitctl credential-process ROLE`, run by AWS SDKs from an AWS config profile:

    [profile prod-ro]
    credential_process = jitctl credential-process prod-readonly

It hands the SDK the cached latest grant for ROLE, or fails at once with exit 4. An SDK runs
it unattended and re-runs it before every expiry, so it never prompts, never waits for a
person, and touches neither AWS nor PagerDuty: getting new credentials is `jitctl request`.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl.credentials.cache import MIN_LEFT, CredentialCache, fresh
from jitctl.credentials.formats import credential_process_json
from jitctl.errors import TimedOut
from jitctl.timeutil import format_duration, rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment


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
