"""The one interface every host asks jitctl's core through, and what it answers.

``jitctl.lifecycle.service.LocalService`` runs the core in this process (direct mode, and
inside the broker); ``jitctl.broker.client.BrokerService`` sends the same questions to a
broker. The CLI depends only on ``AccessService``; the host that assembles the run picks the
implementation (``jitctl.wiring``). Nothing here imports the layers that implement it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from jitctl.models import AccessRequest, Caller, Issued

PollCallback = Callable[[AccessRequest, float], None]


@dataclass
class Outcome:
    """What ``request`` did: issued at once (``issued`` set) or recorded as pending."""

    request: AccessRequest
    fast_path_reason: str
    approvers: list[str]
    warnings: list[str] = field(default_factory=list)
    issued: Issued | None = None


@dataclass
class Revoked:
    """What ``revoke`` did in AWS and in the records (local copies are the client's job)."""

    request: AccessRequest
    details: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    already_revoked: bool = False


class AccessService(Protocol):
    def whoami(self) -> Caller: ...
    def request(
        self,
        role: str,
        reason: str | None,
        duration: timedelta | None,
        break_glass: bool = False,
        *,
        incident: str | None = None,
    ) -> Outcome: ...
    def extend(self, request_id: str, by: timedelta | None, reason: str | None) -> Outcome: ...
    def get(self, request_id: str) -> AccessRequest: ...
    def list(
        self,
        *,
        pending_only: bool,
        mine: bool,
        role: str | None,
        limit: int,
        unreviewed: bool = False,
    ) -> builtins.list[AccessRequest]: ...
    def decidable(self) -> builtins.list[AccessRequest]: ...
    def check_may_decide(self, request_id: str) -> AccessRequest: ...
    def approvers_for(self, request_id: str) -> builtins.list[str]: ...
    def approve(
        self, request_id: str, reason: str | None
    ) -> tuple[AccessRequest, builtins.list[str]]: ...
    def deny(
        self, request_id: str, reason: str | None
    ) -> tuple[AccessRequest, builtins.list[str]]: ...
    def cancel(self, request_id: str, *, interrupted: bool = False) -> AccessRequest: ...
    def wait(
        self,
        request_id: str,
        *,
        timeout: timedelta | None,
        on_poll: PollCallback | None = None,
    ) -> AccessRequest: ...
    def issue(self, request_id: str) -> Issued: ...
    def delivery_failed(self, request_id: str, error: str) -> None: ...
    def revoke(self, request_id: str, reason: str | None) -> Revoked: ...
    def review(self, request_id: str, reason: str | None) -> AccessRequest: ...
    def describe_caller(self) -> dict[str, Any]: ...
    def roles(self) -> builtins.list[dict[str, Any]]: ...
    def audit_records(
        self, *, since: str | None, request_id: str | None, person: str | None, local: bool
    ) -> Iterable[dict[str, Any]]: ...
    def audit_verify(self, *, remote: bool) -> dict[str, Any]: ...
    def explain(self, role: str, as_person: str | None) -> dict[str, Any]: ...
    def grants(self) -> builtins.list[AccessRequest]: ...
    def reuse(self, request_id: str, reason: str | None = None) -> AccessRequest: ...
    def sweep(self) -> dict[str, Any]: ...


@runtime_checkable
class BrokerInfo(Protocol):
    """A service that is a broker's client: its public facts (and with them the broker's
    Date, which sets the client's trusted clock before it signs anything)."""

    def info(self) -> dict[str, Any]: ...
