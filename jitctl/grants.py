"""Which grants are live: derived when read, from the requests themselves (readers write nothing).

A grant is live while its credentials have not expired and no revocation cuts it off. A
revocation denies every session of that person on that role issued before its cutoff, so a
revoked request also ends the person's earlier grants on the same role.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from jitctl.models import ISSUED, REVOKED, AccessRequest


def live(reqs: Iterable[AccessRequest], now: datetime) -> list[AccessRequest]:
    """The issued requests among ``reqs`` whose credentials still work at ``now``."""
    reqs = list(reqs)
    return [r for r in reqs if r.status == ISSUED and not ended(r, reqs, now)]


def ended(grant: AccessRequest, others: Iterable[AccessRequest], now: datetime) -> bool:
    if grant.credentials_expire_at is None or grant.credentials_expire_at <= now:
        return True
    return any(cuts(other, grant) for other in others)


def cuts(revocation: AccessRequest, grant: AccessRequest) -> bool:
    """Whether ``revocation`` (a revoked request) denies ``grant``'s sessions."""
    return (
        revocation.status == REVOKED
        and revocation.requester == grant.requester
        and revocation.role == grant.role
        and revocation.revoked_at is not None
        and grant.issued_at is not None
        and grant.issued_at < revocation.revoked_at
    )
