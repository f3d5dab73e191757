"""PagerDuty: is this person on call now, for one of a role's policies, schedules or services?

Fails closed: any doubt (bad token, rate limit past the budget, server errors, a hang,
TLS trouble, odd JSON, unknown user) is "not on call" with a one-line reason. The whole
lookup, retries included, finishes within ``PagerDutySettings.timeout`` seconds.

``pagerduty``, ``httpx2`` and ``keyring`` are imported inside functions only: ``jitctl
--help`` must not pay for them. The token never appears in a reason or a log line. The token
and the bounded retries are ``jitctl.oncall.client``; the reads made here (users, on-calls,
services) go through ``jitctl.oncall.reader`` (the standard library), the rest of PagerDuty
(incidents) through the official client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import quote

from jitctl.models import OnCallEvidence, OnCallResult
from jitctl.oncall.client import LookupFailed, guard, make_client
from jitctl.timeutil import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from pagerduty import RestApiV2Client as PagerDutyClient

    from jitctl.config.settings import PagerDutySettings
    from jitctl.oncall.reader import PagerDutyReader


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


class UserNotFound(LookupFailed):
    pass


class PagerDutySession:
    """What one command asks PagerDuty: one reader (and, for incidents, one official
    client), one deadline for all of it, each user looked up once and each user's on-calls
    read once (doctor, roles and whoami ask again and again). The token is read when
    PagerDuty is first needed, so a command that never asks needs none. ``warm`` builds the
    reader ahead of that, on another thread; the deadline still starts at the first lookup."""

    def __init__(
        self,
        settings: PagerDutySettings | None,
        token: Callable[[], tuple[str, str]] | None = None,
        reader: PagerDutyReader | None = None,
    ) -> None:
        self.settings = settings
        self._token = token
        self._token_read: str | None = None  # read once per command, by whoever builds first
        self._reader = reader
        self._client: Any = None
        self._owned = reader is None  # a reader handed in is closed by whoever made it
        self._deadline: float | None = None  # one time.monotonic() instant for every lookup
        self._building = threading.Lock()  # warm() and a lookup never both build a reader
        self._users: dict[str, dict[str, Any] | LookupFailed] = {}
        self._oncalls: dict[str, list[dict[str, Any]]] = {}
        self._rotations: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]] | LookupFailed] = {}

    @classmethod
    def over(cls, reader: PagerDutyReader) -> PagerDutySession:
        """A session over a reader someone else made (and closes)."""
        return cls(None, reader=reader)

    def _built(self) -> PagerDutyReader:
        with self._building:
            if self._reader is None:
                from jitctl.oncall.reader import make_reader

                assert self.settings is not None
                self._reader = make_reader(self.settings, self._read_token())
            return self._reader

    def warm(self) -> None:
        """Read the token, build the reader (its TLS context) and open its connection now:
        a thread does it while AWS says who the caller is. A failure here is not reported:
        the first lookup builds (or connects) again and fails the same way, closed."""
        try:
            reader = self._built()
            reader.connect()  # outside _building: a lookup may take the reader meanwhile
        except Exception:  # noqa: BLE001, S110 -- see the docstring; no traceback from a thread
            pass

    @property
    def reader(self) -> PagerDutyReader:
        """The reader for users, on-calls and services, under the command's deadline."""
        reader = self._built()
        if self._owned:
            reader.deadline = self._started()
        return reader

    @property
    def client(self) -> PagerDutyClient:
        """The official client, for what the reader does not do (incidents, notes, pages):
        built when first asked, under the same deadline as the reader."""
        with self._building:
            if self._client is None:
                assert self.settings is not None
                self._client = make_client(self.settings, self._read_token())
        self._client.deadline = self._started()
        return cast("PagerDutyClient", self._client)  # jitctl.oncall.client's subclass of it

    def _started(self) -> float:
        """The command's one deadline, started by its first lookup."""
        if self._deadline is None:
            assert self.settings is not None
            self._deadline = time.monotonic() + self.settings.timeout
        return self._deadline

    def _read_token(self) -> str:
        """The token (read once; under ``_building``), or LookupFailed: without one PagerDuty
        cannot answer, which fails the fast track closed (with this reason shown) while peer
        approval still works."""
        from jitctl.errors import TokenError, Unavailable

        assert self._token is not None
        if self._token_read is None:
            try:
                self._token_read, _source = self._token()
            except (TokenError, Unavailable) as exc:  # none set, no keyring, the secret unreadable
                raise LookupFailed(str(exc)) from None
        return self._token_read

    def user(self, email: str) -> dict[str, Any]:
        """find_user, once per email (a failure is remembered too: it fails the same way)."""
        key = email.strip().lower()
        return _remembered(self._users, key, lambda: find_user(self.reader, key))

    def oncalls(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        """The user's on-call entries at ``now``, read once per command: every check of one
        command sees the same answer (the stamp of the first read, not one per second)."""
        if user_id not in self._oncalls:
            stamp = rfc3339(now)
            params = {"user_ids[]": [user_id], "since": stamp, "until": stamp}
            reader = self.reader
            with guard(reader):
                self._oncalls[user_id] = list(reader.iter_all("/oncalls", params))
        return self._oncalls[user_id]

    def on_call_at(self, param: str, ids: tuple[str, ...], now: datetime) -> list[dict[str, Any]]:
        """Who is on call at ``now`` for the escalation policies or schedules ``ids``
        (``param``: "escalation_policy_ids[]" or "schedule_ids[]"), users included (their
        emails): read once per command, a failure remembered too (it fails the same way)."""
        stamp = rfc3339(now)
        params = {param: list(ids), "since": stamp, "until": stamp, "include[]": ["users"]}

        def read() -> list[dict[str, Any]]:
            reader = self.reader
            with guard(reader):
                return list(reader.iter_all("/oncalls", params))

        return _remembered(self._rotations, (param, ids), read)

    def close(self) -> None:
        with self._building:  # a reader warm() is still building is closed too
            if self._reader is not None and self._owned:
                self._reader.close()
                self._reader = None
            if self._client is not None:
                self._client.close()
                self._client = None


T = TypeVar("T")
K = TypeVar("K")


def _remembered(memo: dict[K, T | LookupFailed], key: K, fetch: Callable[[], T]) -> T:
    """``fetch()``'s answer for ``key``, asked once per command; a LookupFailed is remembered
    too, so every later ask fails the same way without asking PagerDuty again."""
    if key not in memo:
        try:
            memo[key] = fetch()
        except LookupFailed as exc:
            memo[key] = exc
    found = memo[key]
    if isinstance(found, LookupFailed):
        raise found
    return found


# -- the lookups ----------------------------------------------------------------------------
def find_user(reader: PagerDutyReader, email: str) -> dict[str, Any]:
    """The user whose email is ``email`` (case-insensitive, exact), across all result pages.

    ``query`` is a substring search, so every hit is compared; never the first one.
    Raises UserNotFound, or LookupFailed when PagerDuty cannot answer.
    """
    wanted = email.strip().lower()
    with guard(reader):
        users = reader.iter_all("/users", {"query": wanted})
        found = {u["id"]: u for u in users if str(u.get("email", "")).strip().lower() == wanted}
    if not found:
        raise UserNotFound(f"no PagerDuty user has the email {wanted}")
    if len(found) > 1:
        raise LookupFailed(f"several PagerDuty users have the email {wanted}")
    return next(iter(found.values()))


def _service_policy(reader: PagerDutyReader, service_id: str) -> str:
    from jitctl.oncall.reader import HttpStatus

    try:
        service = reader.rget(f"/services/{quote(service_id, safe='')}", "service")
    except HttpStatus as exc:
        if exc.status == 404:
            raise LookupFailed(
                f"PagerDuty has no service {service_id} (404): check the role's on_call services"
            ) from None
        raise
    return str(service["escalation_policy"]["id"])


def check_on_call(
    client: PagerDutyReader | PagerDutySession, email: str, rule: OnCallRule, now: datetime
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
    session = client if isinstance(client, PagerDutySession) else PagerDutySession.over(client)
    try:
        with guard(session.reader):
            user = session.user(email)
            via_service: dict[str, str] = {}  # escalation policy id -> the role's service id
            for service_id in services:
                via_service.setdefault(_service_policy(session.reader, service_id), service_id)
            entries = session.oncalls(user["id"], now)
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
