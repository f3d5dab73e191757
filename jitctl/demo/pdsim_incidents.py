"""The simulator's incidents: the documented shapes of PagerDuty REST API v2 that incident-bound
access and paging need, kept apart from ``pdsim.py``'s users and on-calls.

    GET  /incidents      user_ids[], statuses[], service_ids[], incident_key, date_range=all
                         (else since/until, a month by default), limit/offset/more
    GET  /incidents/{id}
    POST /incidents      {"incident": {type, title, service, incident_key, urgency}}; a second
                         open incident with the same key on the service is refused (400, 2001)
    PUT  /incidents/{id} {"incident": {"type": "incident_reference", "status": "resolved"}}
    POST /incidents/{id}/notes {"note": {"content": ...}}

Writes need ``From: <a known user's email>`` (400 otherwise, as PagerDuty answers an
account-level token without it). Assignments are emptied when an incident resolves, as
PagerDuty does. ``PagerDutySim`` owns one ``IncidentBook`` and routes ``/incidents`` here.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable
from typing import Any

Answer = tuple[int, dict[str, str], Any]
OPEN = ("triggered", "acknowledged")
DEFAULT_WINDOW = dt.timedelta(days=30)  # without date_range=all, PagerDuty looks back a month


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IncidentBook:
    """Incidents and their notes. ``handle`` runs under the simulator's lock."""

    def __init__(
        self,
        lock: Any,
        ref: Callable[[str, str, bool], dict[str, Any]],
        page: Callable[[str, list[Any], dict[str, list[str]]], Answer],
        error: Callable[..., Answer],
        known: Callable[[str], set[str]],
    ) -> None:
        self._lock = lock  # the simulator's: seeding from tests, serving from its threads
        self._ref, self._page, self._error = ref, page, error
        self._known = known  # known("emails") / known("services"): the sim's directory
        self._numbers = itertools.count(1)
        self.incidents: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}

    # -- seeding ------------------------------------------------------------------------
    def add(self, service_id: str, title: str, **kw: Any) -> str:
        """An incident: ``assigned``, ``acknowledged``, ``responders`` (user ids), ``status``,
        ``created``, ``incident_key``. Returns its id."""
        with self._lock:
            return self._add(service_id, title, **kw)

    def set_status(self, inc_id: str, status: str) -> None:
        with self._lock:
            self._set_status(inc_id, status)

    def notes_of(self, inc_id: str) -> list[str]:
        with self._lock:
            return [note["content"] for note in self.notes[inc_id]]

    def _add(
        self,
        service_id: str,
        title: str,
        *,
        assigned: tuple[str, ...] = (),
        acknowledged: tuple[str, ...] = (),
        responders: tuple[str, ...] = (),
        status: str = "triggered",
        created: dt.datetime | None = None,
        incident_key: str | None = None,
    ) -> str:
        number = next(self._numbers)
        inc_id = f"PINC{number:05d}"
        self.incidents[inc_id] = {
            "id": inc_id,
            "number": number,
            "title": title,
            "service": service_id,
            "status": status,
            "assigned": list(assigned),
            "acknowledged": list(acknowledged),
            "responders": list(responders),  # asked to help: neither assigned nor acknowledged
            "created": created or dt.datetime.now(dt.UTC),
            "key": incident_key,
        }
        self.notes[inc_id] = []
        return inc_id

    def _set_status(self, inc_id: str, status: str) -> None:
        incident = self.incidents[inc_id]
        incident["status"] = status
        if status == "resolved":
            incident["assigned"] = []  # PagerDuty empties assignments on resolve

    # -- the API --------------------------------------------------------------------------
    def handle(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: bytes, sender: str
    ) -> Answer:
        if method != "GET" and sender.strip().lower() not in self._known("emails"):
            return self._error(400, "A valid From header is required", 2001)
        if parts == ["incidents"]:
            return self._list(query) if method == "GET" else self._create(body)
        if len(parts) < 2 or parts[1] not in self.incidents:
            return self._error(404)
        inc_id = parts[1]
        if len(parts) == 2 and method == "GET":
            return 200, {}, {"incident": self._incident(inc_id)}
        if len(parts) == 2 and method == "PUT":
            return self._update(inc_id, body)
        if parts[2:] == ["notes"] and method == "POST":
            return self._note(inc_id, body, sender)
        if parts[2:] == ["notes"] and method == "GET":
            return 200, {}, {"notes": self.notes[inc_id]}
        return self._error(405, "Method Not Allowed")

    def _list(self, query: dict[str, list[str]]) -> Answer:
        users = set(query.get("user_ids[]", []))
        statuses = set(query.get("statuses[]", []))
        services = set(query.get("service_ids[]", []))
        keys = set(query.get("incident_key", []))
        since = dt.datetime.now(dt.UTC) - DEFAULT_WINDOW
        if query.get("date_range", [""])[0] == "all":
            since = dt.datetime.min.replace(tzinfo=dt.UTC)
        hits = [
            self._incident(inc_id)
            for inc_id, inc in self.incidents.items()
            if (not users or users & set(inc["assigned"]))  # user_ids[]: assigned now
            and (not statuses or inc["status"] in statuses)
            and (not services or inc["service"] in services)
            and (not keys or inc["key"] in keys)
            and inc["created"] >= since
        ]
        return self._page("incidents", hits, query)

    def _create(self, body: bytes) -> Answer:
        doc = _json(body).get("incident")
        if not isinstance(doc, dict) or not doc.get("title"):
            return self._error(400, "Invalid Input Provided", 2001)
        service = (doc.get("service") or {}).get("id")
        if f"{service}" not in self._known("services"):
            return self._error(400, "Invalid Input Provided", 2001)
        key = doc.get("incident_key")
        if key and any(
            inc["key"] == key and inc["service"] == service and inc["status"] in OPEN
            for inc in self.incidents.values()
        ):
            message = f"Open incident with key '{key}' already exists on this service"
            error = {"message": "Invalid Input Provided", "code": 2001, "errors": [message]}
            return 400, {}, {"error": error}
        inc_id = self._add(f"{service}", str(doc["title"]), incident_key=key)
        return 201, {}, {"incident": self._incident(inc_id)}

    def _update(self, inc_id: str, body: bytes) -> Answer:
        doc = _json(body).get("incident")
        status = doc.get("status") if isinstance(doc, dict) else None
        if status not in ("acknowledged", "resolved"):
            return self._error(400, "Invalid Input Provided", 2001)
        self._set_status(inc_id, status)
        return 200, {}, {"incident": self._incident(inc_id)}

    def _note(self, inc_id: str, body: bytes, sender: str) -> Answer:
        doc = _json(body).get("note")
        content = doc.get("content") if isinstance(doc, dict) else None
        if not isinstance(content, str) or not content:
            return self._error(400, "Invalid Input Provided", 2001)
        note = {
            "id": f"PNOTE{len(self.notes[inc_id]) + 1:03d}",
            "content": content,
            "created_at": _iso(dt.datetime.now(dt.UTC)),
            "user": {"type": "user_reference", "summary": sender},
        }
        self.notes[inc_id].append(note)
        return 201, {}, {"note": note}

    def _incident(self, inc_id: str) -> dict[str, Any]:
        inc = self.incidents[inc_id]
        created = _iso(inc["created"])

        def user(uid: str) -> dict[str, Any]:
            return self._ref("users", uid, True)

        return {
            "id": inc_id,
            "type": "incident",
            "incident_number": inc["number"],
            "title": inc["title"],
            "status": inc["status"],
            "incident_key": inc["key"],
            "created_at": created,
            "service": {"id": inc["service"], "type": "service_reference"},
            "assignments": [{"at": created, "assignee": user(u)} for u in inc["assigned"]],
            "acknowledgements": [
                {"at": created, "acknowledger": user(u)} for u in inc["acknowledged"]
            ],
            "html_url": f"https://pdsim.pagerduty.com/incidents/{inc_id}",
        }


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
