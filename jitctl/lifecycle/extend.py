"""Extending a grant: more time on a live grant, asked for as a request of its own.

`jitctl extend ID --by D --reason R` records an extension request (``extends``: the grant's
id) through the same ``flow.submit`` as `jitctl request`, so the role's rules as they are now
decide it: on call or on the incident now, approved at once; else pending for the role's
approvers (`jitctl approve` as usual). It is issued through the same ``flow.issue``: a NEW
session (same role, session policy, SourceIdentity and tags) ending D after the grant's
current end; the old session is left to end on its own. The grant then records its new end
(``extended_until``), which `status`, `list` and `grants` show as its ``ends_at``.

Bounds, checked when the extension is asked for (refused with exit 3, nothing recorded) and
again when it takes effect: the caller's own grant, still live, whose whole life from its
first issue stays within the role's ``max_total``; an on-call extension ends with the shift.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied, UsageError
from jitctl.lifecycle.grants import liveness
from jitctl.lifecycle.request_rules import STS_MIN_SECONDS
from jitctl.models import AccessRequest, Credentials, OnCallEvidence
from jitctl.store.base import NotFound
from jitctl.timeutil import format_duration, rfc3339

if TYPE_CHECKING:
    from jitctl.audit.fields import Who
    from jitctl.context import Environment
    from jitctl.policy.roles import Role

# AWS stamps a session's expiry a moment after the clock read that planned it: a grant that
# would pass max_total by less than this is cut to it, not refused.
SLACK = timedelta(minutes=1)
BY_HINT = "pass --by, e.g. --by 30m (at most the role's max_duration)"


def grant_of(env: Environment, request_id: str) -> AccessRequest:
    """The grant ``request_id`` names; an extension's id stands for the grant it extends."""
    req = _get(env, request_id)
    return _get(env, req.extends) if req.extends else req


def _get(env: Environment, request_id: str) -> AccessRequest:
    req = env.store.get(request_id, now=env.clock.now())
    if req is None:
        raise NotFound(f"no request {request_id!r}", "`jitctl grants` lists your live grants")
    return req


def check_by(by: timedelta | None, role: Role) -> timedelta:
    """--by: given, and at most the role's max_duration (one approval's worth of time)."""
    if by is None or by <= timedelta(0):
        raise UsageError("an extension needs a duration", BY_HINT)
    if by > role.max_duration:
        raise UsageError(
            f"--by {format_duration(by)} is longer than role {role.name!r} allows at once",
            f"ask for at most {format_duration(role.max_duration)}",
        )
    return by


def check_extendable(env: Environment, request_id: str, by: timedelta | None) -> AccessRequest:
    """The grant to extend by ``by``, or the refusal (exit 3, nothing changes): another
    person's grant (an approver's too), a grant not live, an end past the role's max_total."""
    grant = grant_of(env, request_id)
    if grant.requester != env.caller.person:
        raise Denied(
            f"grant {grant.request_id} belongs to {grant.requester}; only they can extend it",
            "approvers approve an extension its requester asked for: `jitctl approve ID`",
        )
    role = env.policy.role(grant.role)
    if role.identity_center:  # its end is the assignment's, which sweep removes: not a session
        raise UsageError(
            f"grant {grant.request_id} is an IAM Identity Center assignment: jitctl extends "
            "STS sessions only",
            f"request {role.name} again when this grant ends",
        )
    by = check_by(by, role)
    end = live_end(env, grant, env.clock.now())
    past = end + by - total_bound(grant, role)
    if past > SLACK:
        left = _minutes(total_bound(grant, role) + SLACK - end)  # what --by may still be
        raise Denied(
            f"extending {grant.request_id} by {format_duration(by)} would pass the max_total "
            f"of role {role.name!r} ({format_duration(role.max_total)}) by "
            f"{format_duration(_minutes(past))}",
            f"ask for at most {format_duration(left)}, or request the role again"
            if left >= timedelta(minutes=1)
            else f"request {role.name} again",
        )
    return grant


def live_end(env: Environment, grant: AccessRequest, now: datetime) -> datetime:
    """When the live ``grant`` ends (extensions included); Denied when it is not live."""
    theirs = env.store.list(requester=grant.requester, role=grant.role, limit=1000, now=now)
    state = liveness(grant, theirs, now)
    if state is None or not state.live or state.at is None:
        why = state.state.replace("_", " ") if state else grant.status
        raise Denied(
            f"grant {grant.request_id} is not live ({why}): only a live grant can be extended",
            f"request {grant.role} again",
        )
    return state.at


def total_bound(grant: AccessRequest, role: Role) -> datetime:
    """The latest a grant may end: its first issue plus the role's max_total (now's policy)."""
    start = grant.first_issued_at or grant.issued_at
    assert start is not None  # only issued grants are live
    return start + role.max_total


def _minutes(delta: timedelta) -> timedelta:
    """Whole minutes (down), never negative: durations as people ask for them."""
    return timedelta(minutes=max(int(delta.total_seconds() // 60), 0))


def session_seconds(
    env: Environment,
    role: Role,
    req: AccessRequest,
    evidence: OnCallEvidence | None,
    now: datetime,
) -> tuple[int, str | None]:
    """The extension's new session, checked again as it takes effect: it ends ``by`` after
    the grant's current end, cut to max_total and to an on-call shift's end; a re-issue (after
    a failed delivery) ends where the first issue of this extension was planned to."""
    grant = _checked_grant(env, req, now)
    current = live_end(env, grant, now)
    target = req.planned_end or current + timedelta(seconds=req.duration_seconds)
    target, note = _cut(target, total_bound(grant, role), evidence)
    if target - current < SLACK and req.planned_end is None:  # a re-issue ends as planned
        raise Denied(
            f"extension {req.request_id} would end no later than grant {grant.request_id} "
            f"does ({rfc3339(current)}): {note}",
            "request the role again" if evidence is None else "after the shift, ask a peer",
        )
    seconds = int((target - now).total_seconds())
    if seconds < STS_MIN_SECONDS:
        seconds = STS_MIN_SECONDS
        note = "STS sessions last at least 15m: the new credentials last 15m"
    return seconds, note


def _checked_grant(env: Environment, req: AccessRequest, now: datetime) -> AccessRequest:
    """The grant an extension names, the extension's requester's own (the store is data)."""
    assert req.extends is not None
    grant = _get(env, req.extends)
    if grant.requester != req.requester or grant.role != req.role or grant.extends:
        raise Denied(f"extension {req.request_id} does not name a grant of its requester's")
    return grant


def _cut(
    target: datetime, bound: datetime, evidence: OnCallEvidence | None
) -> tuple[datetime, str | None]:
    """``target`` within the grant's max_total and, on call, the shift's end; why it was cut."""
    note = None
    if target > bound:  # by seconds: AWS's own stamp; by more: said so
        note = (
            f"the grant ends at its max_total, {rfc3339(bound)}" if target - bound > SLACK else None
        )
        target = bound
    shift_end = evidence.end if evidence is not None else None
    if shift_end is not None and shift_end < target:
        target, note = (
            shift_end,
            f"the extension ends with your on-call shift, {rfc3339(shift_end)}",
        )
    return target, note


def applied(
    env: Environment, issued: AccessRequest, creds: Credentials, common: Who
) -> AccessRequest:
    """Record the grant's new end (refused if it was revoked meanwhile: the new credentials
    are then never handed out), then audit ``extended``. Returns the grant."""
    assert issued.extends is not None
    try:
        grant = env.store.mark_extended(
            issued.extends, extension=issued.request_id, until=creds.expires
        )
    except UsageError as exc:  # revoked while this extension was being issued
        env.audit.append(
            "issue_failed", **common, access_key_id=creds.access_key_id, error=exc.message
        )
        raise Denied(
            f"grant {issued.extends} ended before the extension took effect: {exc}"
        ) from None
    env.audit.append(
        "extended",
        **audit_fields(env, issued),
        extends=grant.request_id,
        approval=issued.approval,
        approvers=issued.approvers,
        access_key_id=creds.access_key_id,
        ends_at=rfc3339(creds.expires),
        grant_ends_at=rfc3339(grant.extended_until or creds.expires),
        first_issued_at=rfc3339(grant.first_issued_at or grant.issued_at),  # type: ignore[arg-type]
    )
    return grant
