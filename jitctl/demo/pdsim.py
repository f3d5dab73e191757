"""A PagerDuty REST API v2 simulator over HTTPS on loopback (stdlib + cryptography only).

Used by ``jitctl demo`` and by the tests (``tests/pdsim.py`` re-exports it). Serves the
documented shapes of GET /users, /users/{id}, /users/me, /oncalls, /services/{id},
/escalation_policies/{id} and /schedules/{id} (and /incidents: ``pdsim_incidents``), with
classic pagination (``limit`` 25 by default and at most 100, ``offset``, ``more``, ``total``)
and the error envelope ``{"error": {"message": ..., "code": ...}}``. Seed data, inject faults:

    sim = PagerDutySim(make_certs(tmp_dir)).start()   # make_certs: jitctl.demo.tls
    uid = sim.add_user("alice@example.com")
    sim.add_oncall(uid, "PEP1", 1, start=None, end=None)  # permanently on call
    sim.fail_next(429, reset=1)                            # the next response is a 429
    sim.stop()                     # the TLS certificate: jitctl.demo.tls.make_certs
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jitctl.demo.pdsim_incidents import IncidentBook
from jitctl.demo.pdsim_wire import DEFAULT_LIMIT, ERRORS, MAX_LIMIT, Answer
from jitctl.demo.pdsim_wire import error as _error
from jitctl.demo.pdsim_wire import iso as _iso
from jitctl.demo.pdsim_wire import page as _page
from jitctl.demo.pdsim_wire import parse_time as _parse_time
from jitctl.demo.tls import CertFiles, make_certs

ACCOUNT_LEVEL_ME = (
    "Because this request was made using an account-level access token, we were unable to "
    "determine the user's identity. Please use a user-level token."
)
__all__ = ["CertFiles", "make_certs", "PagerDutySim", "LoggedRequest", "DEFAULT_LIMIT", "ERRORS"]
__all__ += ["MAX_LIMIT"]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]  # parse_qs form: repeated parameters keep every value
    status: int
    content_type: str | None = None  # the request's Content-Type header


@dataclass
class _Fault:
    status: int | None  # None: a hang that then answers normally
    remaining: int
    path: str | None = None  # only requests whose path starts with this
    reset: float = 1.0  # 429: the ratelimit-reset header, seconds
    retry_after: float | None = None  # 429: HTTP's Retry-After instead of ratelimit-*
    hang: float = 0.0  # seconds to sleep before answering
    body: str | None = None  # raw body instead of the error envelope


class PagerDutySim:
    """The simulator. Seeding, fault and log methods are thread-safe."""

    def __init__(self, certs: CertFiles, *, token: str | None = "pdsim-account-token") -> None:
        self.certs = certs
        self.token = token  # an account-level token, seeded for convenience
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._users: dict[str, dict[str, str]] = {}  # id -> {"name", "email"}
        self._named: dict[str, dict[str, str]] = {}  # "services/PS1" -> {"name", ["ep"]}
        self._oncalls: list[dict[str, Any]] = []
        self._tokens: dict[str, str | None] = {}  # token -> user id (None: account-level)
        self._faults: list[_Fault] = []
        self._log: list[LoggedRequest] = []
        self._server: _Server | None = None
        self.incidents = IncidentBook(self._lock, self._ref, _page, _error, self._known)
        if token:
            self.add_token(token)

    def start(self) -> PagerDutySim:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.cert, self.certs.key)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.sim = self
        # Handshake lazily, in the handler thread: a bad client cannot block accept().
        server.socket = ctx.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._stopping.clear()
        poll = {"poll_interval": 0.05}  # stop() returns quickly
        threading.Thread(target=server.serve_forever, kwargs=poll, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> PagerDutySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the simulator first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_bundle(self) -> Path:
        return self.certs.ca

    # -- seeding ----------------------------------------------------------------------
    def add_token(self, token: str, user_id: str | None = None) -> str:
        """A valid token: user-level when bound to ``user_id``, else account-level."""
        with self._lock:
            self._tokens[token] = user_id
        return token

    def add_user(self, email: str, name: str | None = None, user_id: str | None = None) -> str:
        with self._lock:
            uid = user_id or f"PU{next(self._ids):05d}"
            self._users[uid] = {"name": name or email.split("@")[0].title(), "email": email}
        return uid

    def add_escalation_policy(self, policy_id: str, name: str | None = None) -> str:
        with self._lock:
            self._named[f"escalation_policies/{policy_id}"] = {
                "name": name or f"Policy {policy_id}"
            }
        return policy_id

    def add_schedule(self, schedule_id: str, name: str | None = None) -> str:
        with self._lock:
            self._named[f"schedules/{schedule_id}"] = {"name": name or f"Schedule {schedule_id}"}
        return schedule_id

    def add_service(
        self, service_id: str, escalation_policy_id: str, name: str | None = None
    ) -> str:
        """A service whose escalation policy is ``escalation_policy_id``."""
        with self._lock:
            self._ensure("escalation_policies", escalation_policy_id)
            entry = {"name": name or f"Service {service_id}", "ep": escalation_policy_id}
            self._named[f"services/{service_id}"] = entry
        return service_id

    def add_oncall(
        self,
        user_id: str,
        escalation_policy_id: str,
        level: int = 1,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        schedule_id: str | None = None,
    ) -> None:
        """An on-call shift [start, end); None on either side is open (permanent on-call)."""
        with self._lock:
            self._ensure("escalation_policies", escalation_policy_id)
            if schedule_id:
                self._ensure("schedules", schedule_id)
            entry = {"user": user_id, "ep": escalation_policy_id, "level": level}
            self._oncalls.append({**entry, "start": start, "end": end, "schedule": schedule_id})

    def rotate(self, user: str, policy: str, level: int = 1, schedule: str | None = None) -> None:
        """The rotation moves on: ``user`` replaces whoever was on call at this level."""
        with self._lock:
            slot = (policy, level, schedule)
            self._oncalls = [
                e for e in self._oncalls if (e["ep"], e["level"], e["schedule"]) != slot
            ]
        self.add_oncall(user, policy, level, schedule_id=schedule)

    def _known(self, what: str) -> set[str]:  # for the IncidentBook: user emails, service ids
        if what == "emails":
            return {u["email"].lower() for u in self._users.values()}
        return {key.split("/", 1)[1] for key in self._named if key.startswith("services/")}

    def _ensure(self, collection: str, obj_id: str) -> None:
        label = {"escalation_policies": "Policy", "schedules": "Schedule"}[collection]
        self._named.setdefault(f"{collection}/{obj_id}", {"name": f"{label} {obj_id}"})

    # -- faults and the request log ------------------------------------------------------
    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        reset: float = 1.0,
        path: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``count`` requests (to paths starting with ``path``) get ``status``.

        A 429 carries ratelimit-limit, ratelimit-remaining and ratelimit-reset (``reset``
        seconds), or only HTTP's Retry-After when ``retry_after`` is given. ``body``
        replaces the error envelope: ``fail_next(200, body="not json")``.
        """
        with self._lock:
            fault = _Fault(status, count, path, reset, retry_after=retry_after, body=body)
            self._faults.append(fault)

    def hang_next(self, seconds: float, count: int = 1, *, path: str | None = None) -> None:
        """The next ``count`` requests sleep ``seconds`` before answering normally."""
        with self._lock:
            self._faults.append(_Fault(None, count, path, hang=seconds))

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Requests answered so far: all of them, or those to exactly ``path``."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and path.startswith(fault.path or ""):
                    fault.remaining -= 1
                    return fault
        return None

    # -- the API --------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], auth: str, **write: Any
    ) -> Answer:
        """Answer one request (faults aside). ``write``: ``body`` and ``sender`` (From)."""
        token = auth.removeprefix("Token token=") if auth.startswith("Token token=") else None
        with self._lock:
            if token not in self._tokens:
                return _error(401)
            parts = path.strip("/").split("/")
            if parts[0] == "incidents":
                body, sender = write.get("body", b""), write.get("sender", "")
                return self.incidents.handle(method, parts, query, body, sender)
            if method != "GET":
                return _error(405, "Method Not Allowed")
            if parts == ["users"]:
                q = query.get("query", [""])[0].lower()
                hits = [
                    self._user(uid)
                    for uid, u in self._users.items()
                    if q in u["name"].lower() or q in u["email"].lower()
                ]
                return _page("users", hits, query)
            if parts == ["users", "me"]:
                me = self._tokens[token]
                if me is None:
                    return _error(400, ACCOUNT_LEVEL_ME, 2001)
                return 200, {}, {"user": self._user(me)}
            if parts == ["oncalls"]:
                return self._list_oncalls(query)
            if len(parts) == 2 and parts[0] == "users" and parts[1] in self._users:
                return 200, {}, {"user": self._user(parts[1])}
            stored = self._named.get("/".join(parts)) if len(parts) == 2 else None
            if stored is not None:
                collection, obj_id = parts
                entity = {**self._ref(collection, obj_id), "name": stored["name"]}
                if collection == "services":
                    ep = self._ref("escalation_policies", stored["ep"], True)
                    entity.update(status="active", escalation_policy=ep)
                return 200, {}, {entity["type"]: entity}
            return _error(404)

    def _list_oncalls(self, query: dict[str, list[str]]) -> Answer:
        now = dt.datetime.now(dt.UTC)
        try:
            since = _parse_time(query["since"][0]) if "since" in query else now
            until = _parse_time(query["until"][0]) if "until" in query else now
        except ValueError:
            return _error(400, "Invalid 'since' or 'until' Parameter Values", 2004)
        if since > until:
            return _error(400, "Invalid Query Date Range", 2005)
        kinds = {
            "user": "user_ids[]",
            "ep": "escalation_policy_ids[]",
            "schedule": "schedule_ids[]",
        }
        filters = {key: set(query[param]) for key, param in kinds.items() if param in query}
        hits = [
            e
            for e in self._oncalls
            if all(e[key] in ids for key, ids in filters.items())  # AND between kinds
            and (e["start"] is None or e["start"] <= until)
            and (e["end"] is None or e["end"] > since)
        ]
        if query.get("earliest", ["false"])[0] == "true":  # one per (policy, level, user)
            first: dict[tuple[str, int, str], dict[str, Any]] = {}
            for e in sorted(hits, key=lambda e: e["start"] or since):
                first.setdefault((e["ep"], e["level"], e["user"]), e)
            hits = list(first.values())
        full = "users" in query.get("include[]", [])  # include[]=users: users with emails
        rows = [self._oncall(e) | ({"user": self._user(e["user"])} if full else {}) for e in hits]
        return _page("oncalls", rows, query)

    def _ref(self, collection: str, obj_id: str, reference: bool = False) -> dict[str, Any]:
        kind = "escalation_policy" if collection == "escalation_policies" else collection[:-1]
        if collection == "users":
            summary = self._users[obj_id]["name"] if obj_id in self._users else obj_id
        else:
            summary = self._named[f"{collection}/{obj_id}"]["name"]
        return {
            "id": obj_id,
            "type": f"{kind}_reference" if reference else kind,
            "summary": summary,
            "self": f"{self.url}/{collection}/{obj_id}",
            "html_url": f"https://pdsim.pagerduty.com/{collection}/{obj_id}",
        }

    def _user(self, uid: str) -> dict[str, Any]:
        user = self._users[uid]
        return {**self._ref("users", uid), **user, "time_zone": "Etc/UTC", "role": "user"}

    def _oncall(self, e: dict[str, Any]) -> dict[str, Any]:
        return {
            "escalation_policy": self._ref("escalation_policies", e["ep"], True),
            "escalation_level": e["level"],
            "schedule": self._ref("schedules", e["schedule"], True) if e["schedule"] else None,
            "user": self._ref("users", e["user"], True),
            "start": _iso(e["start"]),
            "end": _iso(e["end"]),
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sim: PagerDutySim

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # aborted handshakes and clients that gave up waiting are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pdsim"
    timeout = 10  # an idle keep-alive connection does not pin a thread for ever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_DELETE = do_GET

    def _answer(self) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        write = {"body": self.rfile.read(length), "sender": self.headers.get("From", "")}
        fault = sim._take_fault(split.path)
        if fault is not None and fault.hang and sim._stopping.wait(fault.hang):
            return  # the simulator is stopping
        if fault is not None and fault.status is not None:
            status, headers, body = _error(fault.status)
            if fault.status == 429:
                reset = f"{fault.reset:g}"
                headers = {
                    "ratelimit-limit": "960",
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": reset,
                }
                if fault.retry_after is not None:
                    headers = {"Retry-After": f"{fault.retry_after:g}"}
            raw = fault.body if fault.body is not None else json.dumps(body)
        else:
            auth = self.headers.get("Authorization", "")
            status, headers, body = sim.handle(self.command, split.path, query, auth, **write)
            raw = json.dumps(body)
        with sim._lock:
            entry = LoggedRequest(
                self.command, split.path, query, status, self.headers.get("Content-Type")
            )
            sim._log.append(entry)
        data = raw.encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
