"""Access tied to a PagerDuty incident: the incident fast track, ``request --incident ID``,
the re-check before issuing, and the notes that put access on the incident's timeline.

The evidence (id, number, title, service, how the requester is on it) is kept on the request,
in the session tags and in the audit records. A note that cannot be posted is audited and
shown, and never blocks access or its revocation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitctl.audit.fields import audit_fields
from jitctl.errors import Denied, UsageError
from jitctl.models import AccessRequest, IncidentEvidence
from jitctl.oncall.client import LookupFailed
from jitctl.timeutil import rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.policy.roles import Role


@dataclass(frozen=True)
class IncidentTrack:
    """What submit learned: the incident the request is tied to (if any), whether that
    fast-tracks it, and one line saying why (not)."""

    evidence: IncidentEvidence | None
    fast: bool
    reason: str


def check_id(value: str | None) -> str | None:
    """A PagerDuty incident id: letters and digits (it goes into a URL path and a tag)."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9]{1,64}", value):
        raise UsageError(
            f"--incident {value!r} is not a PagerDuty incident id",
            "pass the incident's id (like PXYZ123, from its URL), not its number or title",
        )
    return value


def sender(env: Environment) -> str:
    """The ``From`` of PagerDuty writes: ``[pagerduty] from`` (an operator's or the broker's
    address), else the person acting now (the requester, an approver, whoever runs sweep)."""
    return env.config.pagerduty.sender or env.caller.person


def check_submit(env: Environment, role: Role, incident_id: str | None) -> IncidentTrack:
    """The incident side of a new request. An explicitly named incident the requester is not
    working is refused (Denied, exit 3); PagerDuty trouble only means no incident fast track."""
    services = role.incident.services if role.incident else None
    person = env.caller.person
    if incident_id is None and services is None:
        return IncidentTrack(None, False, f"role {role.name!r} has no incident fast track")
    from jitctl.oncall import incidents as pd

    found: IncidentEvidence | None
    try:
        if incident_id is not None:
            found = pd.check_incident(env.pagerduty, person, incident_id, None)
        else:
            found = pd.find_working(env.pagerduty, person, tuple(services or ()))
    except pd.NotOnIncident as exc:
        raise Denied(
            f"--incident {incident_id}: {exc.reason}",
            "name an incident you are assigned to or acknowledged, or leave --incident out",
        ) from None
    except LookupFailed as exc:
        return IncidentTrack(None, False, f"incident check failed: {exc.reason}")
    if found is None:
        return IncidentTrack(None, False, f"{person} works no open incident on {_names(services)}")
    fast = services is not None and found.service_id in services
    what = f"incident {found.incident_id} (#{found.number}, {found.how})"
    return IncidentTrack(found, fast, f"working {what}" if fast else f"tied to {what}")


def _names(services: tuple[str, ...] | None) -> str:
    return "the role's services " + ", ".join(services or ())


def keep(req: AccessRequest, role: Role, evidence: IncidentEvidence) -> None:
    """Tie the request to the incident (stored with it, so sweep and notes find it)."""
    end = bool(role.incident and role.incident.end_with_incident)
    req.incident = evidence.as_dict() | {"end_with_incident": end}


def recheck(env: Environment, role: Role, req: AccessRequest) -> str | None:
    """Before issuing an ``incident`` approval: read the incident again. Why not, or None."""
    from jitctl.oncall import incidents as pd

    if role.incident is None or not req.incident:
        return f"role {role.name!r} has no incident fast track"
    try:
        pd.check_incident(env.pagerduty, req.requester, req.incident["id"], role.incident.services)
    except LookupFailed as exc:  # NotOnIncident included: resolved, reassigned, moved
        return f"the incident no longer fast-tracks this request: {exc.reason}"
    return None


def fields(req: AccessRequest) -> dict[str, object]:
    """The incident evidence for an audit record, when the request has one."""
    return {"incident": dict(req.incident)} if req.incident else {}


def tag(req: AccessRequest) -> str:
    """The ``jitctl:incident`` session tag: id/number/service."""
    inc = req.incident or {}
    return f"{inc['id']}/{inc['number']}/{inc['service']}" if inc else ""


def note(env: Environment, req: AccessRequest, content: str) -> str | None:
    """Post ``content`` on the request's incident; a failure is audited and returned as a
    warning (None when posted or when the request has no incident)."""
    if not req.incident:
        return None
    from jitctl.oncall import incidents as pd

    inc_id = str(req.incident["id"])
    try:
        pd.post_note(env.pagerduty, inc_id, content, sender(env))
    except LookupFailed as exc:
        env.audit.append(
            "incident_note_failed", **audit_fields(env, req), incident=inc_id, error=exc.reason
        )
        return f"could not add a note to incident {inc_id}: {exc.reason}"
    env.audit.append("incident_noted", **audit_fields(env, req), incident=inc_id)
    return None


def issued_text(req: AccessRequest) -> str:
    until = rfc3339(req.credentials_expire_at) if req.credentials_expire_at else "?"
    how = req.approval or "?"
    return (
        f"jitctl: {req.requester} was granted AWS role {req.role} until {until} "
        f"(approval: {how}; reason: {req.reason}; request {req.request_id})"
    )


def revoked_text(req: AccessRequest) -> str:
    return (
        f"jitctl: AWS role {req.role} of {req.requester} was revoked by {req.revoked_by} "
        f"(reason: {req.revoked_reason}; request {req.request_id})"
    )
