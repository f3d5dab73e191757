"""PagerDuty incidents: is this person working an open incident on these services, and the
writes that tie access to incidents (timeline notes, pages that ring an approver's phone).

Every call goes through the command's ``oncall.PagerDutySession`` (one client, one deadline,
bounded retries) and fails closed: PagerDuty trouble is ``LookupFailed`` with one line of
reason, never a yes. Writes carry ``From:``, which PagerDuty requires: ``[pagerduty] from``
when set (the operator's or broker's address), else the email of the person acting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from jitctl.models import IncidentEvidence
from jitctl.oncall.client import LookupFailed, guard

if TYPE_CHECKING:
    from jitctl.oncall.session import PagerDutySession

OPEN = ("triggered", "acknowledged")


class NotOnIncident(LookupFailed):
    """PagerDuty answered, and the person is not working that incident (a refusal, not trouble)."""


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def how_on(incident: dict[str, Any], user_id: str) -> str | None:
    """ "assigned" or "acknowledged" when ``user_id`` is on the incident now, else None. A
    responder who was only asked to help is neither; an acknowledger may be a service."""
    for entry in incident.get("assignments") or []:
        if str((entry.get("assignee") or {}).get("id")) == user_id:
            return "assigned"
    for entry in incident.get("acknowledgements") or []:
        who = entry.get("acknowledger") or {}
        if str(who.get("id")) == user_id and str(who.get("type", "")).startswith("user"):
            return "acknowledged"
    return None


def evidence(
    incident: dict[str, Any], user_id: str, services: tuple[str, ...] | None
) -> str | IncidentEvidence:
    """The evidence that ``user_id`` works ``incident`` (open, on one of ``services`` when
    given), or why not (a string)."""
    inc_id, number = str(incident["id"]), int(incident["incident_number"])
    status, service = str(incident["status"]), str(incident["service"]["id"])
    if status not in OPEN:
        return f"incident {inc_id} (#{number}) is {status}, not open"
    if services is not None and service not in services:
        return f"incident {inc_id} (#{number}) is on service {service}, not one of this role's"
    how = how_on(incident, user_id)
    if how is None:
        return f"you are neither assigned to nor acknowledged incident {inc_id} (#{number})"
    title = str(incident.get("title") or "")
    return IncidentEvidence(inc_id, number, title, service, status, how, user_id)


def find_working(
    session: PagerDutySession, email: str, services: tuple[str, ...]
) -> IncidentEvidence | None:
    """An open incident on ``services`` that ``email`` is assigned to or acknowledged, or None.

    Server-side filters, every page followed: first the incidents assigned to the user
    (``user_ids[]`` means assigned now), then the acknowledged ones on those services, for
    someone who acknowledged and was reassigned. Each hit is checked here again."""
    client = session.client
    with guard(client):
        user_id = str(session.user(email)["id"])
        base = {"service_ids[]": list(services), "date_range": "all"}
        queries = (
            base | {"user_ids[]": [user_id], "statuses[]": list(OPEN)},
            base | {"statuses[]": ["acknowledged"]},
        )
        for params in queries:
            for incident in client.iter_all("/incidents", params=params):
                found = evidence(incident, user_id, services)
                if isinstance(found, IncidentEvidence):
                    return found
    return None


def read_incident(session: PagerDutySession, incident_id: str) -> dict[str, Any]:
    """``GET /incidents/{id}``: the incident as it is now. LookupFailed if PagerDuty cannot
    say (404 included: an incident nobody can read proves nothing)."""
    client = session.client
    with guard(client):
        response = client.request("GET", _path("incidents", incident_id))
        if response.status_code == 404:  # PagerDuty answered: there is no such incident
            raise NotOnIncident(f"PagerDuty has no incident {incident_id}")
        return _body(response, "incident", f"GET /incidents/{incident_id}")


def check_incident(
    session: PagerDutySession, email: str, incident_id: str, services: tuple[str, ...] | None
) -> IncidentEvidence:
    """Re-read ``incident_id`` and return the evidence that ``email`` works it now; raise
    NotOnIncident with the reason when not, LookupFailed when PagerDuty cannot say."""
    incident = read_incident(session, incident_id)
    with guard(session.client):
        found = evidence(incident, str(session.user(email)["id"]), services)
    if isinstance(found, str):
        raise NotOnIncident(found)
    return found


def post_note(session: PagerDutySession, incident_id: str, content: str, sender: str) -> None:
    """A note on the incident's timeline (``POST /incidents/{id}/notes``)."""
    body = {"note": {"content": content[:25000]}}
    _write(session, "POST", _path("incidents", incident_id, "notes"), body, sender, "note")


def open_page(session: PagerDutySession, service_id: str, title: str, key: str, sender: str) -> str:
    """Open an incident on ``service_id`` (the approver's phone rings) and return its id. The
    incident key makes it once only: when an open one with ``key`` exists (a retry, a second
    process), that one is returned."""
    body = {
        "incident": {
            "type": "incident",
            "title": title[:1024],
            "service": {"id": service_id, "type": "service_reference"},
            "incident_key": key,
            "urgency": "high",
        }
    }
    try:
        return str(_write(session, "POST", "/incidents", body, sender, "incident")["id"])
    except LookupFailed:
        existing = _open_with_key(session, service_id, key)
        if existing is None:
            raise
        return existing


def resolve_page(session: PagerDutySession, incident_id: str, sender: str) -> None:
    """Resolve the page (``PUT /incidents/{id}``); resolving a resolved one is harmless."""
    body = {"incident": {"type": "incident_reference", "status": "resolved"}}
    _write(session, "PUT", _path("incidents", incident_id), body, sender, "incident")


def _open_with_key(session: PagerDutySession, service_id: str, key: str) -> str | None:
    client = session.client
    params = {"incident_key": key, "service_ids[]": [service_id], "date_range": "all"}
    params["statuses[]"] = list(OPEN)
    with guard(client):
        for incident in client.iter_all("/incidents", params=params):
            if incident.get("incident_key") == key:
                return str(incident["id"])
    return None


def _write(
    session: PagerDutySession,
    method: str,
    path: str,
    body: dict[str, Any],
    sender: str,
    wrapper: str,
) -> dict[str, Any]:
    client = session.client
    with guard(client):
        response = client.request(method, path, json=body, headers={"From": sender})
        return _body(response, wrapper, f"{method} {path}")


def _body(response: Any, wrapper: str, what: str) -> dict[str, Any]:
    status = response.status_code
    if status == 401:
        raise LookupFailed("PagerDuty rejected the token (401)")
    if status >= 300:
        detail = ""
        try:
            error = response.json().get("error") or {}
            detail = "; ".join(str(e) for e in error.get("errors") or [error.get("message")])
        except (ValueError, AttributeError):
            pass
        raise LookupFailed(f"PagerDuty refused {what} ({status}){': ' + detail if detail else ''}")
    doc = response.json()[wrapper]
    if not isinstance(doc, dict):
        raise TypeError(wrapper)
    return doc
