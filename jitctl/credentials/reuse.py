"""`jitctl exec ROLE` reuses your cached grant for ROLE (like aws-vault's cached sessions).

The grant comes from the local credential cache (jitctl.credentials.cache, the one `credential-process`
reads) while it has at least cache.MIN_LEFT to run. The core then checks it is the caller's and
still live (jitctl.grants: not expired, not cut off by a revocation) and audits the use as
``reused`` with its request id: in broker mode the broker does both, on its own trail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl.errors import Denied, UsageError
from jitctl.models import Issued

if TYPE_CHECKING:
    from jitctl.context import Environment


def reuse_cached(env: Environment, role: str) -> tuple[Issued | None, str | None]:
    """(the cached grant for ``role`` as Issued, None) when it may be used now; otherwise
    (None, why not), where why is None when there was simply nothing cached."""
    from jitctl.credentials.cache import MIN_LEFT, fresh

    found = env.credential_cache.lookup(role).grant
    if found is None:
        return None, None
    if not fresh(found, env.clock.now(), MIN_LEFT):
        return None, f"cached grant {found.request_id} has under {MIN_LEFT} left"
    try:
        req = env.service.reuse(found.request_id)
    except (Denied, UsageError) as exc:  # revoked, expired, another person's, or gone
        return None, exc.message
    if req.role != role:  # the cache is keyed by role; a record claiming another is not used
        return None, f"cached grant {found.request_id} is for role {req.role}"
    return Issued(request=req, credentials=found.creds, region=_role_region(env, role)), None


def _role_region(env: Environment, role: str) -> str | None:
    """The role's region from the policy in direct mode; a broker's client has no policy (the
    caller's own region then applies, as for a profile written without one)."""
    return None if env.config.broker.client else env.policy.role(role).region
