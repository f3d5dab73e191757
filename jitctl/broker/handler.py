"""The broker's core, request in, response out (dated); ``wsgi`` and ``aws_lambda`` translate.

Every call but ``GET /v1/info`` and Slack's (``jitctl.slack.interactions``) carries a proof of
who is calling (``jitctl.broker.proof``), checked against the broker's pinned STS endpoint; the
ARN maps to a person by the one identity rule, and ``LocalService`` runs for that caller with
the broker's own AWS credentials."""
from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jitctl import __version__, errors
from jitctl.broker import wire
from jitctl.broker.role_facts import broker_role_facts
from jitctl.models import PENDING
from jitctl.trusted_time import http_date

if TYPE_CHECKING:
    from jitctl.broker.nonces import NonceStore
    from jitctl.broker.proof import ProofSettings
    from jitctl.context import Environment
    from jitctl.lifecycle.service import LocalService

MAX_BODY = 64 * 1024  # a request's JSON is small; anything larger is refused unread
MAX_WAIT = 20.0  # seconds one long-poll may hold a connection
_ID = r"(?P<id>r-[a-z0-9]{1,32})"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # with the query string, exactly as sent (the proof binds it)
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    lambda_access_key: str | None = None  # under Lambda: the key AWS authenticated

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl, urlsplit

        return dict(parse_qsl(urlsplit(self.path).query))

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            doc = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.UsageError(f"the request body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise errors.UsageError("the request body must be a JSON object")
        return doc


@dataclass
class HttpResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "application/json", "cache-control": "no-store"}
    )

    def encoded(self) -> bytes:
        return json.dumps(self.body, sort_keys=True).encode()


Doc = dict[str, Any]  # a JSON object, as an endpoint answers it
Action = Callable[["LocalService", HttpRequest, dict[str, str]], Doc]


class Broker:
    """Routes authenticated calls to the core, for one environment (the broker's own)."""

    def __init__(
        self,
        env: Environment,
        *,
        proof: ProofSettings,
        nonces: NonceStore,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.env = env
        self.proof = proof
        self.nonces = nonces
        self.on_error = on_error or (lambda text: sys.stderr.write(text + "\n"))
        self._warm = threading.Lock()
        self._ready = False
        self.roles = broker_role_facts(env)

    def handle(self, request: HttpRequest) -> HttpResponse:
        answer = self._answer(request)  # its Date, the broker's trusted time, is its clients'
        answer.headers["date"] = http_date(self.env.clock.now())
        return answer

    def _answer(self, request: HttpRequest) -> HttpResponse:
        try:
            if len(request.body) > MAX_BODY:
                raise errors.UsageError(f"request body over {MAX_BODY} bytes")
            if (request.method, request.path) == ("GET", f"{wire.API}/info"):
                return HttpResponse(200, self.info())
            if request.path.startswith(f"{wire.API}/slack/"):  # Slack's signature, not a proof
                from jitctl.slack.interactions import handle

                self._warm_up()
                return HttpResponse(*handle(self.env, self.nonces, request))
            action, params = _route(request.method, request.path.split("?", 1)[0])
            service = self.service_for(request)
            try:
                return HttpResponse(200, action(service, request, params))
            finally:
                service.env.close()  # this call's PagerDuty client
        except errors.JitctlError as exc:
            status, body = wire.error_out(exc)
            return HttpResponse(_http_status(exc, status), body)
        except Exception as exc:  # a bug: say so without details a caller could mine
            self.on_error(f"jitctl broker: unexpected {type(exc).__name__} on {request.path}")
            return HttpResponse(500, {"error": {"message": "internal error", "exit_code": 1}})

    def info(self) -> dict[str, Any]:
        """What a client needs before it can sign a proof: no secret, no auth."""
        return {
            "server_id": self.proof.server_id,
            "sts_endpoint": self.proof.sts_endpoint,
            "sts_region": self.proof.sts_region,
            "version": __version__,
        }

    def service_for(self, request: HttpRequest) -> LocalService:
        from jitctl.broker.proof import verify_proof
        from jitctl.identity.rule import resolve_caller
        from jitctl.lifecycle.service import LocalService

        self._warm_up()
        verified = verify_proof(
            request.headers,
            method=request.method,
            path=request.path,
            body=request.body,
            settings=self.proof,
            now=self.env.clock.now(),
            nonces=self.nonces,
            lambda_access_key=request.lambda_access_key,
        )
        self._check_account(verified.account)
        caller = resolve_caller(
            verified.arn,
            verified.account,
            self.env.policy.identity,
            user_id=verified.user_id,
            roles=self.roles.lookup,
        )
        return LocalService(self.env.for_caller(caller))

    def housekeeping(self) -> dict[str, Any]:
        """The scheduled sweep, as the broker itself (no caller: nobody asked)."""
        from jitctl.lifecycle.sweep import sweep, system_caller

        self._warm_up()
        env = self.env.for_caller(system_caller(self.env))
        try:
            return sweep(env).as_dict()
        finally:
            env.close()

    def _check_account(self, account: str) -> None:
        """Only principals of the accounts this broker serves: an IAM user named like a
        colleague's email in some other account is nobody here."""
        allowed = self.env.config.broker.accounts or (self.env.identity()[1],)
        if account not in allowed:
            raise errors.Denied(
                f"principals of account {account} are not served by this broker",
                "ask its operators to add the account to [broker] accounts",
            )

    def _warm_up(self) -> None:
        """What every call shares, built once before threads race to; the policy as now."""
        if not self._ready:
            with self._warm:
                if not self._ready:
                    _ = (self.env.config, self.env.policy, self.env.store, self.env.audit)
                    self._ready = True
        self.env.refresh_policy()


# ------------------------------------------------------------------ the endpoints


def _whoami(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"caller": wire.caller_out(service.whoami())}


def _report(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"report": service.describe_caller()}


def _roles(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"roles": service.roles()}


def _explain(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"explain": service.explain(params["role"], request.query.get("as") or None)}


def _submit(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    doc = request.json()
    duration = wire.duration(doc, "duration_seconds")
    glass = doc.get("break_glass", False)
    if type(glass) is not bool:
        raise errors.UsageError("break_glass must be true or false")
    incident = wire.text(doc, "incident") if doc.get("incident") is not None else None
    outcome = service.request(
        wire.text(doc, "role"), _reason(request), duration, glass, incident=incident
    )
    return wire.outcome_out(outcome)


def _extend(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    by = wire.duration(request.json(), "by_seconds")
    return wire.outcome_out(service.extend(params["id"], by, _reason(request)))


def _limit(q: dict[str, str], default: int, most: int) -> int:
    try:
        return min(max(int(q.get("limit", str(default))), 1), most)
    except ValueError:
        raise errors.UsageError("limit must be a whole number") from None


def _list(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    q = request.query
    limit = _limit(q, 100, 1000)
    reqs = service.list(
        pending_only=q.get("pending") == "1",
        mine=q.get("mine") == "1",
        role=q.get("role") or None,
        limit=limit,
        unreviewed=q.get("unreviewed") == "1",
    )
    return {"requests": [wire.request_out(r) for r in reqs]}


def _grants(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"requests": [wire.request_out(r) for r in service.grants()]}


def _decidable(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"requests": [wire.request_out(r) for r in service.decidable()]}


def _get(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"request": wire.request_out(service.get(params["id"]))}


def _approvers(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"approvers": service.approvers_for(params["id"])}


def _may_decide(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"request": wire.request_out(service.check_may_decide(params["id"]))}


def _approve(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    req, warnings = service.approve(params["id"], _reason(request))
    return {"request": wire.request_out(req), "warnings": warnings}


def _deny(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    req, warnings = service.deny(params["id"], _reason(request))
    return {"request": wire.request_out(req), "warnings": warnings}


def _cancel(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    """``{"interrupted": true}``: the client's run was stopped by a Ctrl-C (the audit says so)."""
    interrupted = request.json().get("interrupted", False)
    if type(interrupted) is not bool:
        raise errors.UsageError("interrupted must be true or false")
    return {"request": wire.request_out(service.cancel(params["id"], interrupted=interrupted))}


def _wait(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    """Long-poll: answers once the request is approved, or still pending after ``seconds``."""
    try:
        seconds = min(max(float(request.query.get("seconds", MAX_WAIT)), 0.0), MAX_WAIT)
    except ValueError:
        raise errors.UsageError("seconds must be a number") from None
    try:
        req = service.wait(params["id"], timeout=timedelta(seconds=seconds))
        return {"request": wire.request_out(req), "decided": True}
    except errors.TimedOut:
        current = service.get(params["id"])
        if current.status != PENDING:
            raise
        return {"request": wire.request_out(current), "decided": False}


def _issue(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"issued": wire.issued_out(service.issue(params["id"]))}


def _delivery_failed(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    service.delivery_failed(params["id"], str(request.json().get("error") or "")[:300])
    return {}


def _reason(request: HttpRequest) -> str | None:
    return wire.optional_text(request.json(), "reason")


def _reuse(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"request": wire.request_out(service.reuse(params["id"], _reason(request)))}


def _revoke(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return wire.revoked_out(service.revoke(params["id"], _reason(request)))


def _review(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"request": wire.request_out(service.review(params["id"], _reason(request)))}


def _audit(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    """With ``limit`` (this version's client) one page (jitctl.audit.read.audit_page), without
    it (an older client) every record."""
    from jitctl.audit.read import PAGE, audit_page

    limit = _limit(request.query, PAGE, PAGE) if "limit" in request.query else None
    return audit_page(service.audit_records, request.query, limit)


def _audit_verify(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    """The broker's own trail: its log's chain and, with remote, the central copy's chains and
    signatures. A failed verification is a verdict in the report, not an error."""
    return {"report": service.audit_verify(remote=bool(request.json().get("remote")))}


def _sweep(service: LocalService, request: HttpRequest, params: dict[str, str]) -> Doc:
    return {"report": service.sweep()}


_ROUTES: list[tuple[str, re.Pattern[str], Action]] = [
    (method, re.compile(f"{wire.API}{pattern}"), action)
    for method, pattern, action in (
        ("GET", "/whoami", _whoami),
        ("GET", "/whoami/report", _report),
        ("GET", "/roles", _roles),
        ("GET", r"/roles/(?P<role>[A-Za-z0-9_.-]{1,64})/explain", _explain),
        ("POST", "/requests", _submit),
        ("POST", "/sweep", _sweep),
        ("GET", "/requests", _list),
        ("GET", "/decidable", _decidable),
        ("GET", "/grants", _grants),
        ("GET", f"/requests/{_ID}", _get),
        ("GET", f"/requests/{_ID}/approvers", _approvers),
        ("GET", f"/requests/{_ID}/may-decide", _may_decide),
        ("POST", f"/requests/{_ID}/approve", _approve),
        ("POST", f"/requests/{_ID}/deny", _deny),
        ("POST", f"/requests/{_ID}/cancel", _cancel),
        ("GET", f"/requests/{_ID}/wait", _wait),
        ("POST", f"/requests/{_ID}/issue", _issue),
        ("POST", f"/requests/{_ID}/delivery-failed", _delivery_failed),
        ("POST", f"/requests/{_ID}/revoke", _revoke),
        ("POST", f"/requests/{_ID}/extend", _extend),
        ("POST", f"/requests/{_ID}/reuse", _reuse),
        ("POST", f"/requests/{_ID}/review", _review),
        ("GET", "/audit", _audit),
        ("POST", "/audit/verify", _audit_verify),
    )
]


def _route(method: str, path: str) -> tuple[Action, dict[str, str]]:
    allowed = False
    for want, pattern, action in _ROUTES:
        match = pattern.fullmatch(path)
        if match and want == method:
            return action, match.groupdict()
        allowed = allowed or bool(match)
    if allowed:
        raise _HttpError(405, f"{method} is not allowed on {path}")
    raise _HttpError(404, f"no broker endpoint {path}")


def _http_status(exc: errors.JitctlError, default: int) -> int:
    from jitctl.broker.proof import ProofError

    if isinstance(exc, ProofError):
        return 401
    return getattr(exc, "http_status", default)


class _HttpError(errors.UsageError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status
