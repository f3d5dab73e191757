"""The client side of broker mode: ``AccessService`` over HTTPS.

Every call carries a proof signed with the caller's own AWS credentials (profiles, SSO, env:
botocore's chain) that covers the broker's server id and this call's method, path and body.
The client never assumes a role, never touches the store or the central audit copy and needs
no PagerDuty token. A broker that cannot be reached, is not trusted (TLS) or is not the one
configured (server id) exits 5 with one line.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jitctl.broker import wire
from jitctl.errors import TimedOut, Unavailable, UsageError
from jitctl.lifecycle import interrupts
from jitctl.lifecycle.contract import Outcome, PollCallback, Revoked
from jitctl.models import AccessRequest, Caller, Issued
from jitctl.timeutil import format_duration

if TYPE_CHECKING:
    from jitctl.context import Environment

MAX_RESPONSE = 4 * 1024 * 1024


class BrokerService:
    """What commands ask, asked of the broker at ``[broker] url``."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.settings = env.config.broker
        self._info: dict[str, Any] | None = None

    # ------------------------------------------------------------ the interface

    def whoami(self) -> Caller:
        return wire.caller_in(self._call("GET", "/whoami")["caller"])

    def request(
        self,
        role: str,
        reason: str | None,
        duration: timedelta | None,
        break_glass: bool = False,
        *,
        incident: str | None = None,
    ) -> Outcome:
        body: dict[str, Any] = {"role": role, "reason": reason}
        if break_glass:
            body["break_glass"] = True
        if incident is not None:
            body["incident"] = incident
        if duration is not None:
            body["duration_seconds"] = int(duration.total_seconds())
        # The broker records the request whether or not this process waits for its answer:
        # a Ctrl-C acts once the answer (the request's id) is in (jitctl.lifecycle.interrupts).
        with interrupts.held():
            outcome = wire.outcome_in(self._call("POST", "/requests", body))
            self.env.run.recorded(outcome.request)
        return outcome

    def extend(self, request_id: str, by: timedelta | None, reason: str | None) -> Outcome:
        body: dict[str, Any] = {"reason": reason}
        if by is not None:
            body["by_seconds"] = int(by.total_seconds())
        with interrupts.held():  # as for `request`: a Ctrl-C acts once the id is in
            outcome = wire.outcome_in(self._call("POST", _rid(request_id, "extend"), body))
            self.env.run.recorded(outcome.request)
        return outcome

    def get(self, request_id: str) -> AccessRequest:
        return wire.request_in(self._call("GET", _rid(request_id))["request"])

    def list(
        self,
        *,
        pending_only: bool,
        mine: bool,
        role: str | None,
        limit: int,
        unreviewed: bool = False,
    ) -> builtins.list[AccessRequest]:
        query = {"pending": "1" if pending_only else "", "mine": "1" if mine else ""}
        query["unreviewed"] = "1" if unreviewed else ""
        query |= {"role": role or "", "limit": str(limit)}
        path = "/requests?" + urlencode({k: v for k, v in query.items() if v})
        return [wire.request_in(r) for r in self._call("GET", path)["requests"]]

    def decidable(self) -> builtins.list[AccessRequest]:
        return [wire.request_in(r) for r in self._call("GET", "/decidable")["requests"]]

    def check_may_decide(self, request_id: str) -> AccessRequest:
        return wire.request_in(self._call("GET", _rid(request_id, "may-decide"))["request"])

    def approvers_for(self, request_id: str) -> builtins.list[str]:
        return [str(a) for a in self._call("GET", _rid(request_id, "approvers"))["approvers"]]

    def approve(
        self, request_id: str, reason: str | None
    ) -> tuple[AccessRequest, builtins.list[str]]:
        doc = self._call("POST", _rid(request_id, "approve"), {"reason": reason})
        return wire.request_in(doc["request"]), [str(w) for w in doc.get("warnings") or []]

    def deny(self, request_id: str, reason: str | None) -> tuple[AccessRequest, builtins.list[str]]:
        doc = self._call("POST", _rid(request_id, "deny"), {"reason": reason})
        return wire.request_in(doc["request"]), [str(w) for w in doc.get("warnings") or []]

    def cancel(self, request_id: str, *, interrupted: bool = False) -> AccessRequest:
        body = {"interrupted": True} if interrupted else {}
        return wire.request_in(self._call("POST", _rid(request_id, "cancel"), body)["request"])

    def wait(
        self,
        request_id: str,
        *,
        timeout: timedelta | None,
        on_poll: PollCallback | None = None,
    ) -> AccessRequest:
        """Long-polls the broker (it holds each call up to 20 s) until a decision; a Ctrl-C
        ends the run through ``jitctl.lifecycle.interrupts``."""
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            left = None if timeout is None else timeout.total_seconds() - elapsed
            if timeout is not None and left is not None and left <= 0:
                raise TimedOut(
                    f"no decision on {request_id} after {format_duration(timeout)}; it stays "
                    "pending until it expires",
                    f"resume with `jitctl wait {request_id}`",
                )
            seconds = 20.0 if left is None else min(20.0, left)
            doc = self._call("GET", _rid(request_id, "wait") + f"?seconds={seconds:.1f}")
            if doc.get("decided"):
                return wire.request_in(doc["request"])
            if on_poll is not None:
                on_poll(wire.request_in(doc["request"]), time.monotonic() - start)

    def issue(self, request_id: str) -> Issued:
        return wire.issued_in(self._call("POST", _rid(request_id, "issue"), {})["issued"])

    def delivery_failed(self, request_id: str, error: str) -> None:
        self._call("POST", _rid(request_id, "delivery-failed"), {"error": error})

    def revoke(self, request_id: str, reason: str | None) -> Revoked:
        return wire.revoked_in(self._call("POST", _rid(request_id, "revoke"), {"reason": reason}))

    def review(self, request_id: str, reason: str | None) -> AccessRequest:
        doc = self._call("POST", _rid(request_id, "review"), {"reason": reason})
        return wire.request_in(doc["request"])

    def describe_caller(self) -> dict[str, Any]:
        return wire.doc_in(self._call("GET", "/whoami/report"), "report")

    def roles(self) -> builtins.list[dict[str, Any]]:
        return wire.docs_in(self._call("GET", "/roles"), "roles")

    def audit_records(
        self, *, since: str | None, request_id: str | None, person: str | None, local: bool
    ) -> Iterable[dict[str, Any]]:
        """The broker's trail (there is no local one in broker mode: ``local`` changes nothing),
        a page at a time: neither side holds more than a page."""
        query = {"since": since or "", "request": request_id or "", "person": person or ""}
        query = {k: v for k, v in query.items() if v}
        return self._audit_pages(query, self._audit_page(query, None))  # the first one now

    def _audit_page(self, query: dict[str, str], after: str | None) -> dict[str, Any]:
        from jitctl.audit.read import PAGE

        page = query | {"limit": str(PAGE)} | ({"after": after} if after else {})
        return self._call("GET", "/audit?" + urlencode(page))

    def _audit_pages(self, query: dict[str, str], doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            yield from wire.docs_in(doc, "records")
            after = doc.get("next")  # an older broker sends every record and no next
            if not isinstance(after, str) or not after:
                return
            doc = self._audit_page(query, after)

    def audit_verify(self, *, remote: bool) -> dict[str, Any]:
        return wire.doc_in(self._call("POST", "/audit/verify", {"remote": remote}), "report")

    def sweep(self) -> dict[str, Any]:
        return wire.doc_in(self._call("POST", "/sweep", {}), "report")

    def grants(self) -> builtins.list[AccessRequest]:
        return [wire.request_in(r) for r in self._call("GET", "/grants")["requests"]]

    def reuse(self, request_id: str, reason: str | None = None) -> AccessRequest:
        """The broker checks the grant and writes the ``reused`` record to its own trail (a
        client in broker mode writes no audit)."""
        doc = self._call("POST", _rid(request_id, "reuse"), {"reason": reason})
        return wire.request_in(doc["request"])

    def explain(self, role: str, as_person: str | None) -> dict[str, Any]:
        query = "?" + urlencode({"as": as_person}) if as_person else ""
        return wire.doc_in(
            self._call("GET", f"/roles/{quote(role, safe='')}/explain{query}"), "explain"
        )

    # ------------------------------------------------------------ the transport

    def info(self) -> dict[str, Any]:
        """The broker's public facts, checked against this client's config once per run."""
        if self._info is None:
            info = self._send("GET", "/info", b"", {})
            if info.get("server_id") != self.settings.server_id:
                raise Unavailable(
                    f"the broker at {self.settings.url} says it is {info.get('server_id')!r}, "
                    f"not {self.settings.server_id!r}",
                    "check [broker] url and server_id: this is not the broker you configured",
                )
            self._info = info
        return self._info

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        from jitctl.broker.proof import make_proof

        info = self.info()
        data = json.dumps(body).encode() if body is not None else b""
        full = wire.API + path
        headers = make_proof(
            self._credentials(),
            sts_url=info["sts_endpoint"],
            sts_region=info["sts_region"],
            server_id=self.settings.server_id or "",
            method=method,
            path=full,
            body=data,
            now=self.env.clock.now(),
        )
        return self._send(method, path, data, headers)

    def _credentials(self) -> Any:
        from jitctl.aws import translate_error

        try:
            creds = self.env.aws.session().get_credentials()
        except Exception as exc:
            raise translate_error(exc, "cannot read your AWS credentials") from exc
        if creds is None:
            raise UsageError(
                "no AWS credentials found: the broker needs them to tell who you are",
                "log in first (e.g. `aws sso login`) or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
            )
        return creds.get_frozen_credentials()

    def _send(self, method: str, path: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        import http.client
        import urllib.error
        import urllib.request

        url = (self.settings.url or "") + wire.API + path
        req = urllib.request.Request(url, data=data or None, method=method, headers=headers)
        req.add_header("content-type", "application/json")
        try:
            with _opener(self.settings.ca_bundle).open(req, timeout=self.settings.timeout) as resp:
                self._observe_time(resp)
                return _decode(resp.status, resp.read(MAX_RESPONSE + 1))
        except urllib.error.HTTPError as exc:
            self._observe_time(exc)
            doc = _json_or_none(exc.read(MAX_RESPONSE + 1))
            raise wire.error_in(exc.code, doc) from None
        except http.client.HTTPException:
            # Not HTTP at all (a bad status line, a broken header): the bytes it sent are not
            # shown, they are whatever is listening there, not the broker's message.
            raise Unavailable(
                f"the service at {self.settings.url} did not answer with HTTP: it is not the broker",
                "check [broker] url (host and port); nothing was requested",
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            # a read asks nothing of anyone; a write may have arrived before the line failed
            after = "" if method == "GET" else "; `jitctl list --mine` shows whether it arrived"
            raise Unavailable(
                f"cannot reach the broker at {self.settings.url}: {reason}",
                f"check [broker] url and your network{after}",
            ) from None

    def _observe_time(self, answer: Any) -> None:
        """The broker's ``Date`` (its trusted clock's) is this run's time, as STS's is in
        direct mode: for the proof's signing date and what is shown here. The broker decides
        by its own clock, never by this one."""
        from jitctl.trusted_time import TrustedClock

        if isinstance(self.env.clock, TrustedClock):
            self.env.clock.after_call(http_response=answer)


def _rid(request_id: str, action: str = "") -> str:
    path = "/requests/" + quote(request_id, safe="")
    return f"{path}/{action}" if action else path


def _opener(ca_bundle: Any) -> Any:
    """TLS verified against the system's CAs (or ``ca_bundle``); redirects are not followed,
    so a proof is never replayed to a host the config did not name."""
    import ssl
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())


def _decode(status: int, raw: bytes) -> dict[str, Any]:
    doc = _json_or_none(raw)
    if len(raw) > MAX_RESPONSE or not isinstance(doc, dict):
        raise Unavailable(f"the broker answered HTTP {status} with something that is not jitctl's")
    return doc


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
