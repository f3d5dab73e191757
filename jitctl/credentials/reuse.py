"""`jitctl exec ROLE` reuses your cached grant for ROLE (like aws-vault's cached sessions).

The grant comes from the local credential cache (jitctl.credentials.cache, the one `credential-process`
reads) while it has at least cache.MIN_LEFT to run. The core then checks it is the caller's and
still live (jitctl.lifecycle.grants: not expired, not cut off by a revocation) and audits the use as
``reused`` with its request id: in broker mode the broker does both, on its own trail.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from jitctl.errors import Denied, UsageError
from jitctl.models import Issued

if TYPE_CHECKING:
    from jitctl.context import Environment


def reuse_cached(
    env: Environment, role: str, reason: str | None = None, wanted: timedelta | None = None
) -> tuple[Issued | None, str | None]:
    """(the cached grant for ``role`` as Issued, None) when it may be used now (for ``wanted``
    more time, if asked); otherwise (None, why not), where why is None when there was simply
    nothing cached. ``reason``: why it is used this time, for the ``reused`` record."""
    from jitctl.credentials.cache import MIN_LEFT, fresh
    from jitctl.timeutil import format_duration

    found = env.credential_cache.lookup(role).grant
    if found is None:
        return None, None
    now = env.clock.now()
    if not fresh(found, now, MIN_LEFT):
        return None, f"cached grant {found.request_id} has under {MIN_LEFT} left"
    if wanted is not None and not fresh(found, now, wanted):
        return (
            None,
            f"cached grant {found.request_id} has under the {format_duration(wanted)} asked",
        )
    try:
        req = env.service.reuse(found.request_id, reason)
    except (Denied, UsageError) as exc:  # revoked, expired, another person's, or gone
        return None, exc.message
    if req.role != role:  # the cache is keyed by role; a record claiming another is not used
        return None, f"cached grant {found.request_id} is for role {req.role}"
    return Issued(request=req, credentials=found.creds, region=_role_region(env, role)), None


def _role_region(env: Environment, role: str) -> str | None:
    """The role's region from the policy in direct mode; a broker's client has no policy (the
    caller's own region then applies, as for a profile written without one)."""
    return None if env.config.broker.client else env.policy.role(role).region
