"""Which grants are live: derived when read, from the requests themselves (readers write nothing).

A grant is live while its credentials have not expired and no revocation cuts it off. A
revocation denies every session of that person on that role issued before its cutoff, so a
revoked request also ends the person's earlier grants on the same role. `grants`, `list`,
`status` and `exec`'s reuse all ask this module, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from jitctl.models import ISSUED, REVOKED, AccessRequest, grant_end, is_identity_center

LIVE = "live"
EXPIRED = "expired"  # the credentials ran out
CUT_OFF = "cut_off"  # a later revocation of the same person and role denies its sessions
REVOKED_GRANT = "revoked"  # this grant itself was revoked


@dataclass(frozen=True)
class Liveness:
    """Whether an issued (or revoked) grant's credentials work now, and since when not."""

    state: str  # LIVE, EXPIRED, CUT_OFF or REVOKED_GRANT
    at: datetime | None  # LIVE: when it ends; otherwise when it ended
    by: str | None = None  # CUT_OFF: the revoked request that cut it off

    @property
    def live(self) -> bool:
        return self.state == LIVE

    def as_dict(self) -> dict[str, object]:
        """The JSON form (`list --json`, `status --json`): ``grant_state``, ``grant_ended_at``,
        ``cut_off_by``."""
        from jitctl.timeutil import rfc3339

        ended = None if self.live or self.at is None else rfc3339(self.at)
        return {"grant_state": self.state, "grant_ended_at": ended, "cut_off_by": self.by}


def live(reqs: Iterable[AccessRequest], now: datetime) -> list[AccessRequest]:
    """The issued requests among ``reqs`` whose credentials still work at ``now``."""
    reqs = list(reqs)
    return [r for r in reqs if r.status == ISSUED and not ended(r, reqs, now)]


def ended(grant: AccessRequest, others: Iterable[AccessRequest], now: datetime) -> bool:
    state = liveness(grant, others, now)
    return state is None or not state.live


def liveness(
    grant: AccessRequest, others: Iterable[AccessRequest], now: datetime
) -> Liveness | None:
    """What is true of ``grant``'s credentials at ``now``; None for a request never issued.
    ``others`` are the requests that may cut it off (the person's, on that role, or more)."""
    expires = grant_end(grant)  # an extended grant lives until its extended end
    if grant.status == REVOKED:
        return Liveness(REVOKED_GRANT, grant.revoked_at)
    if grant.status != ISSUED:
        return None
    cutters = [o for o in others if cuts(o, grant)]
    if cutters:
        # ignores: cuts() holds only for revoked requests, whose revoked_at is set
        first = min(cutters, key=lambda o: o.revoked_at)  # type: ignore[arg-type,return-value]
        if expires is None or first.revoked_at < expires:  # type: ignore[operator]
            return Liveness(CUT_OFF, first.revoked_at, first.request_id)
    if expires is None or expires <= now:
        return Liveness(EXPIRED, expires)
    return Liveness(LIVE, expires)


def cuts(revocation: AccessRequest, grant: AccessRequest) -> bool:
    """Whether ``revocation`` (a revoked request) denies ``grant``'s sessions. Revoking an
    identity_center grant denies no sessions: it ends its own hold on the assignment, which
    another live grant keeps (jitctl.identity_center.grant)."""
    return (
        revocation.status == REVOKED
        and not is_identity_center(revocation)
        and revocation.request_id != grant.request_id
        and revocation.requester == grant.requester
        and revocation.role == grant.role
        and revocation.revoked_at is not None
        and grant.issued_at is not None
        and grant.issued_at < revocation.revoked_at
    )
