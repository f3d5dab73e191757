"""Ending identity_center grants outside `revoke`: `jitctl sweep` (the broker runs it every
minute) removes the assignments jitctl made whose grants have all ended, and `doctor` lists
any still held.

The store knows every assignment jitctl may have made: its record is written ("creating")
before CreateAccountAssignment. So a grant that ran out, one revoked while AWS was down, and
an issue that crashed or stuck IN_PROGRESS between AWS and the store are all found here, and
each is ended through ``grant.release`` (kept while another live grant holds it; never an
assignment that was there before jitctl).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jitctl import models
from jitctl.audit.fields import audit_fields
from jitctl.identity_center import grant, sso
from jitctl.models import AccessRequest
from jitctl.store import claims

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jitctl.context import Environment
    from jitctl.policy.roles import Role


def needs_ending(req: AccessRequest, now: datetime, bound: float) -> bool:
    """jitctl holds (or may hold) this request's assignment and its grant is over: run out,
    revoked, or an issue that failed or was abandoned (its claim older than lease + bound)."""
    rec = req.assignment or {}
    if rec.get("kind") != grant.KIND or rec.get("state") not in grant.HELD:
        return False
    if req.status == models.ISSUED:
        return not grant.live(req, now)
    if req.status != models.APPROVED:
        return True  # revoked (the revocation did not get to AWS), or expired/denied
    if req.issue_failure is not None:
        return True
    stale = claims.CLAIM_LEASE + timedelta(seconds=bound)
    return req.claimed_at is not None and now >= req.claimed_at + stale


def end(env: Environment, req: AccessRequest, now: datetime) -> dict[str, Any] | None:
    """Release the request's assignment if its grant is over; what was done, or None."""
    if not needs_ending(req, now, env.config.identity_center.timeout):
        return None
    who = audit_fields(env, req)
    who["actor_kind"] = "sweep"
    done = grant.release(env, req, now, who)
    state = (done.assignment or {}).get("state")
    return {"request_id": req.request_id, "assignment": state}


def leftovers(env: Environment, now: datetime, limit: int = 1000) -> list[dict[str, Any]]:
    """For `doctor`: assignments jitctl made whose grants are over and that AWS still holds."""
    found = []
    bound = env.config.identity_center.timeout
    for req in env.store.list(limit=limit):
        if needs_ending(req, now, bound):
            rec = req.assignment or {}
            if "principal_id" in rec and sso.exists(env, sso.target_from(rec)):
                found.append(
                    {
                        "request_id": req.request_id,
                        "requester": req.requester,
                        "account": rec.get("account"),
                        "permission_set": rec.get("permission_set"),
                    }
                )
    return found


def session_warnings(env: Environment, roles: Iterable[Role]) -> list[str]:
    """identity_center roles whose permission set's session duration outlasts the role's
    max_duration: a session signed in near the grant's end outlives it by the difference,
    since deleting the assignment does not end it (aws/aws-sdk#598)."""
    from jitctl.timeutil import format_duration

    found = []
    chosen = [r for r in roles if r.kind == grant.KIND]
    instance_arn = sso.instance(env)[0] if chosen else ""
    for role in chosen:
        described = sso.permission_set(env, instance_arn, str(role.permission_set))
        session = iso_duration(str(described.get("SessionDuration") or "PT1H"))
        if session > role.max_duration:
            found.append(
                f"{role.name}: permission set {role.permission_set} keeps a signed-in session "
                f"for {format_duration(session)}, longer than max_duration "
                f"{format_duration(role.max_duration)}: {grant.NOT_CUT}"
            )
    return found


def iso_duration(text: str) -> timedelta:
    """SessionDuration as AWS writes it (ISO 8601: PT1H, PT12H, PT1H30M)."""
    import re

    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    if found is None:
        return timedelta(hours=12)  # unreadable: assume the longest AWS allows, and say so
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)
