"""PagerDuty: is this person on call now, for one of a role's policies, schedules or services?

Fails closed: any doubt (bad token, rate limit past the budget, server errors, a hang,
TLS trouble, odd JSON, unknown user) is "not on call" with a one-line reason. The whole
lookup, retries included, finishes within ``PagerDutySettings.timeout`` seconds.

``pagerduty``, ``httpx2`` and ``keyring`` are imported inside functions only: ``jitctl
--help`` must not pay for them. The token never appears in a reason or a log line.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from jitctl.config import PagerDutySettings
from jitctl.errors import ConfigError, TokenError
from jitctl.models import OnCallEvidence, OnCallResult
from jitctl.timeutil import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from pagerduty import RestApiV2Client as PagerDutyClient

TOKEN_ENV = "JITCTL_PAGERDUTY_TOKEN"
KEYRING_SERVICE = "jitctl"
KEYRING_USER = "pagerduty"
MAX_ATTEMPTS = 3  # per request: the first try and at most two retries
BACKOFF = 0.25  # seconds before the first retry of a 5xx or network error; doubles
MIN_REQUEST_TIME = 0.1  # do not start a request with less time than this left

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # the client logs 5xx as errors; keep stderr clean


class OnCallRule(Protocol):
    """What check_on_call reads from a role's ``on_call`` table (jitctl.policy.OnCallRule)."""

    @property
    def escalation_policies(self) -> tuple[str, ...]: ...
    @property
    def schedules(self) -> tuple[str, ...]: ...
    @property
    def services(self) -> tuple[str, ...]: ...
    @property
    def max_escalation_level(self) -> int | None: ...


class LookupFailed(Exception):
    """PagerDuty gave no trustworthy answer. ``reason`` is one line for a human."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UserNotFound(LookupFailed):
    pass


class _RateLimited(Exception):
    """Raised from the client's postprocess hook to leave its unbounded 429 loop."""

    def __init__(self, response: Any) -> None:
        super().__init__("429")
        self.response = response


# -- the token ----------------------------------------------------------------------------
def get_token(
    env: Mapping[str, str], keyring_get: Callable[[str, str], str | None] | None = None
) -> tuple[str, str]:
    """(token, source): ``$JITCTL_PAGERDUTY_TOKEN`` ("env"), else the OS keyring ("keyring")."""
    token = (env.get(TOKEN_ENV) or "").strip()
    if token:
        return token, "env"
    try:
        if keyring_get is None:
            import keyring

            keyring_get = keyring.get_password
        token = (keyring_get(KEYRING_SERVICE, KEYRING_USER) or "").strip()
    except Exception as exc:  # NoKeyringError, KeyringError, RuntimeError, D-Bus trouble...
        raise TokenError(
            f"no PagerDuty token: no usable keyring backend is available ({type(exc).__name__})",
            f"set the token in the environment instead: export {TOKEN_ENV}=...",
        ) from None
    if token:
        return token, "keyring"
    raise TokenError(
        "no PagerDuty token found",
        f"export {TOKEN_ENV}=... or store it with `keyring set {KEYRING_SERVICE} {KEYRING_USER}`",
    )


def read_token_secret(aws: Any, secret_id: str) -> str:
    """The token stored in Secrets Manager (the broker's; clients need none). A failure is
    TokenError or AwsUnavailable: the fast track fails closed, peer approval still works."""
    from jitctl.aws import translate_error

    try:
        value = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except Exception as exc:
        raise translate_error(exc, f"cannot read the PagerDuty token secret {secret_id}") from exc
    token = (value.get("SecretString") or "").strip()
    if not token:
        raise TokenError(
            f"the PagerDuty token secret {secret_id} has no SecretString",
            "store the token as the secret's string value",
        )
    return token


# -- the client -----------------------------------------------------------------------------
@cache
def _client_class() -> type:
    import httpx2
    import pagerduty

    class _Client(pagerduty.RestApiV2Client):
        """RestApiV2Client that never sleeps or loops on its own: retries are ours, bounded."""

        max_network_attempts = 0  # a network error raises at once, without sleeping
        max_http_attempts = 0

        def __init__(self, token: str, *, budget: float, deadline: float | None, **kw: Any):
            super().__init__(token, **kw)
            self.retry = {}  # no status-specific retries inside the library
            self.log = log.getChild("http")
            self.budget = budget  # seconds for one whole lookup
            self.deadline = deadline  # time.monotonic() instant; None: set per lookup

        def time_left(self) -> float:
            if self.deadline is None:
                return self.budget
            return self.deadline - time.monotonic()

        def postprocess(self, response: Any) -> None:
            super().postprocess(response)
            if response.status_code == 429:
                raise _RateLimited(response)

        def request(self, method: str, url: str, **kw: Any) -> Any:
            delay = BACKOFF
            for attempt in range(1, MAX_ATTEMPTS + 1):
                left = self.time_left()
                if left < MIN_REQUEST_TIME:
                    raise LookupFailed(f"PagerDuty unreachable: timed out after {self.budget:g}s")
                self.timeout = left  # per-request timeout: whatever the budget has left
                last = attempt == MAX_ATTEMPTS
                try:
                    response = super().request(method, url, **kw)
                except _RateLimited as exc:
                    wait = _reset_seconds(exc.response)
                    if last:
                        reason = (
                            f"PagerDuty rate limit (429): still limited after {attempt} attempts"
                        )
                        raise LookupFailed(reason) from None
                    if wait + MIN_REQUEST_TIME > self.time_left():
                        reason = (
                            f"PagerDuty rate limit (429): it resets in {wait:g}s, "
                            f"past the {self.budget:g}s budget"
                        )
                        raise LookupFailed(reason) from None
                    time.sleep(wait)
                    continue
                except pagerduty.HttpError:
                    raise  # 401: the library raises at once; translated by guard
                except pagerduty.Error as exc:  # a network error (max_network_attempts = 0)
                    cause = exc.__cause__
                    if isinstance(cause, httpx2.TimeoutException):
                        raise LookupFailed(
                            f"PagerDuty unreachable: timed out after {self.budget:g}s"
                        ) from None
                    if _is_tls_failure(cause):
                        raise LookupFailed(
                            "PagerDuty unreachable: its TLS certificate is not trusted "
                            "(set [pagerduty] ca_bundle or JITCTL_PAGERDUTY_CA_BUNDLE)"
                        ) from None
                    if last or delay + MIN_REQUEST_TIME > self.time_left():
                        what = type(cause or exc).__name__
                        raise LookupFailed(f"PagerDuty unreachable: {what}") from None
                else:
                    if response.status_code < 500 or last:
                        return response
                    if delay + MIN_REQUEST_TIME > self.time_left():
                        return response
                time.sleep(delay)
                delay *= 2
            raise AssertionError("unreachable")  # pragma: no cover

    return _Client


def _reset_seconds(response: Any) -> float:
    try:
        return max(float(response.headers.get("ratelimit-reset", "1")), 0.0)
    except ValueError:
        return 1.0


def _is_tls_failure(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def make_client(
    settings: PagerDutySettings, token: str, *, deadline: float | None = None
) -> PagerDutyClient:
    """A REST API v2 client for ``settings.url``, trusting ``settings.ca_bundle`` if set.

    ``deadline`` (a ``time.monotonic()`` instant) bounds every lookup made with this
    client; without it each check_on_call/find_user call gets ``settings.timeout`` seconds.
    """
    import pagerduty

    verify: ssl.SSLContext | bool = True
    if settings.ca_bundle is not None:
        try:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use the PagerDuty CA bundle {settings.ca_bundle}: {exc}",
                "fix [pagerduty] ca_bundle or JITCTL_PAGERDUTY_CA_BUNDLE",
            ) from None
    budget = settings.timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        return _client_class()(
            token, budget=budget, deadline=deadline, base_url=settings.url, verify=verify
        )
    except pagerduty.UrlError:
        raise ConfigError(
            f"PagerDuty URL {settings.url!r} must start with https://",
            "fix [pagerduty] url or JITCTL_PAGERDUTY_URL",
        ) from None


@contextmanager
def guard(client: Any) -> Iterator[None]:
    """Start the lookup's clock (unless running) and turn PagerDuty trouble into LookupFailed."""
    import httpx2
    import pagerduty

    fresh = client.deadline is None
    if fresh:
        client.deadline = time.monotonic() + client.budget
    try:
        yield
    except LookupFailed:
        raise
    except pagerduty.HttpError as exc:
        raise LookupFailed(_http_reason(exc.response)) from None
    except (pagerduty.Error, pagerduty.UrlError, httpx2.HTTPError, OSError) as exc:
        raise LookupFailed(f"PagerDuty unreachable: {type(exc).__name__}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LookupFailed(
            f"PagerDuty sent an unexpected response ({type(exc).__name__})"
        ) from None
    finally:
        if fresh:
            client.deadline = None


def _http_reason(response: Any) -> str:
    status = response.status_code
    where = f"GET {response.request.url.path}"
    if status == 401:
        return f"PagerDuty rejected the token (401): check {TOKEN_ENV}"
    if status == 403:
        return f"PagerDuty refused {where} (403): the token may not read users and on-calls"
    if status >= 500:
        return f"PagerDuty unavailable: {where} answered {status}"
    if 200 <= status < 300:
        return f"PagerDuty sent an unexpected response to {where}"
    return f"PagerDuty refused {where} ({status})"


# -- the lookups ----------------------------------------------------------------------------
def find_user(client: PagerDutyClient, email: str) -> dict:
    """The user whose email is ``email`` (case-insensitive, exact), across all result pages.

    ``query`` is a substring search, so every hit is compared; never the first one.
    Raises UserNotFound, or LookupFailed when PagerDuty cannot answer.
    """
    wanted = email.strip().lower()
    with guard(client):
        users = client.iter_all("/users", params={"query": wanted})
        found = {u["id"]: u for u in users if str(u.get("email", "")).strip().lower() == wanted}
    if not found:
        raise UserNotFound(f"no PagerDuty user has the email {wanted}")
    if len(found) > 1:
        raise LookupFailed(f"several PagerDuty users have the email {wanted}")
    return next(iter(found.values()))


def _service_policy(client: Any, service_id: str) -> str:
    import pagerduty

    try:
        service = client.rget(f"/services/{quote(service_id, safe='')}")
    except pagerduty.HttpError as exc:
        if exc.response.status_code == 404:
            raise LookupFailed(
                f"PagerDuty has no service {service_id} (404): check the role's on_call services"
            ) from None
        raise
    return str(service["escalation_policy"]["id"])


def check_on_call(
    client: PagerDutyClient, email: str, rule: OnCallRule, now: datetime
) -> OnCallResult:
    """Whether ``email`` is on call at ``now`` for the rule's policies, schedules or services.

    Never raises for PagerDuty trouble: that is ``OnCallResult(on_call=False, reason=...)``.
    """
    now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
    policies, schedules = tuple(rule.escalation_policies), tuple(rule.schedules)
    services, max_level = tuple(rule.services), rule.max_escalation_level
    if not (policies or schedules or services):
        reason = "the role's on_call names no escalation policy, schedule or service"
        return OnCallResult(on_call=False, reason=reason)
    try:
        with guard(client):
            user = find_user(client, email)
            via_service: dict[str, str] = {}  # escalation policy id -> the role's service id
            for service_id in services:
                via_service.setdefault(_service_policy(client, service_id), service_id)
            stamp = rfc3339(now)
            params = {"user_ids[]": [user["id"]], "since": stamp, "until": stamp}
            entries = list(client.iter_all("/oncalls", params=params))
            return _decide(
                entries, user["id"], email, now, policies, schedules, via_service, max_level
            )
    except LookupFailed as exc:
        return OnCallResult(on_call=False, reason=exc.reason)


def _decide(
    entries: list[dict[str, Any]],
    user_id: str,
    email: str,
    now: datetime,
    policies: tuple[str, ...],
    schedules: tuple[str, ...],
    via_service: dict[str, str],
    max_level: int | None,
) -> OnCallResult:
    matches: list[OnCallEvidence] = []
    too_high: list[OnCallEvidence] = []
    elsewhere = False
    for entry in entries:
        if entry["user"]["id"] != user_id:
            continue  # the server filtered on user_ids[]; check anyway
        if not covers(entry, now):
            continue  # the server was asked since = until = now; check anyway
        start, end = _when(entry.get("start")), _when(entry.get("end"))
        policy_id = str(entry["escalation_policy"]["id"])
        schedule_id = (entry.get("schedule") or {}).get("id")
        level = entry["escalation_level"]
        if not isinstance(level, int) or isinstance(level, bool):
            raise TypeError("escalation_level")
        if policy_id in policies:
            kind, matched = "escalation_policy", policy_id
        elif schedule_id in schedules:
            kind, matched = "schedule", str(schedule_id)
        elif policy_id in via_service:
            kind, matched = "service", via_service[policy_id]
        else:
            elsewhere = True
            continue
        evidence = OnCallEvidence(kind, matched, policy_id, level, start, end, user_id, schedule_id)
        (too_high if max_level is not None and level > max_level else matches).append(evidence)
    if matches:
        best = max(matches, key=_preference)
        return OnCallResult(on_call=True, reason=f"on call: {_describe(best)}", evidence=best)
    if too_high:
        low = min(too_high, key=lambda ev: ev.level)
        reason = (
            f"{email} is on call for {_what(low)} at level {low.level}, "
            f"above the role's maximum escalation level {max_level}"
        )
        return OnCallResult(on_call=False, reason=reason)
    if elsewhere:
        reason = f"{email} is on call, but not for this role's escalation policies, schedules or services"
        return OnCallResult(on_call=False, reason=reason)
    return OnCallResult(on_call=False, reason=f"{email} is not on call in PagerDuty now")


def _when(value: Any) -> datetime | None:
    return None if value is None else parse_rfc3339(str(value))


def covers(entry: dict[str, Any], now: datetime) -> bool:
    """Whether an /oncalls entry's shift covers ``now`` (a null start or end is open)."""
    start, end = _when(entry.get("start")), _when(entry.get("end"))
    return (start is None or start <= now) and (end is None or end > now)


def _preference(ev: OnCallEvidence) -> tuple[bool, datetime, int]:
    """The shift that ends latest wins (open-ended beats all); then the lower level."""
    return (ev.end is None, ev.end or datetime.min.replace(tzinfo=UTC), -ev.level)


def _what(ev: OnCallEvidence) -> str:
    if ev.matched_kind == "escalation_policy":
        return f"escalation policy {ev.escalation_policy_id}"
    kind = ev.matched_kind.replace("_", " ")
    return f"{kind} {ev.matched_id} (escalation policy {ev.escalation_policy_id})"


def _describe(ev: OnCallEvidence) -> str:
    until = "(permanent)" if ev.end is None else f"until {rfc3339(ev.end)}"
    return f"{_what(ev)} level {ev.level} {until}"
