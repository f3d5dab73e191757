"""On-call approvers: ``oncall:ESCALATION_POLICY_ID`` and ``schedule:SCHEDULE_ID`` entries in a
role's ``approvers`` name whoever PagerDuty says is on call there now, at any level.

They are resolved when a decision is made (approve, deny, may-decide, decidable, the
approvers to ask, issue's re-check), never stored: the rotation moves on, and so do they.
PagerDuty trouble of any kind means those entries match nobody (fail closed); the other
approvers still can. ``Policy.approver_matches`` stays the one matching rule: this module
only hands it the people on call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jitctl.policy.schema import on_call_entry

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.policy.roles import Role

_PARAMS = {"oncall": "escalation_policy_ids[]", "schedule": "schedule_ids[]"}


@dataclass(frozen=True)
class OnCallApprovers:
    """Each on-call entry of a role and the people (lower-case emails) on call there now."""

    people: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problem: str | None = None  # why PagerDuty gave no answer: the entries match nobody

    def as_dict(self) -> dict[str, Any]:
        return {"people": {k: list(v) for k, v in self.people.items()}, "problem": self.problem}


def resolve(env: Environment, role: Role) -> OnCallApprovers:
    """Ask PagerDuty (once per command and kind: the session caches it) who is on call now for
    the role's on-call entries. No entries: no question asked."""
    entries = role.approval.on_call_entries if role.approval else ()
    if not entries:
        return OnCallApprovers()
    now = env.clock.now()
    parsed = {e: on_call_entry(e) or ("", "") for e in entries}
    people: dict[str, tuple[str, ...]] = {}
    try:
        for kind, param in _PARAMS.items():
            wanted = {e: pd_id for e, (k, pd_id) in parsed.items() if k == kind}
            if wanted:
                rows = env.pagerduty.on_call_at(param, tuple(sorted(set(wanted.values()))), now)
                people |= _match(rows, kind, wanted, now)
    except Exception as exc:  # any trouble (token, network, odd JSON): fail closed
        return OnCallApprovers({e: () for e in entries}, _why(exc))
    return OnCallApprovers(people)


def _match(
    rows: list[dict[str, Any]], kind: str, wanted: dict[str, str], now: datetime
) -> dict[str, tuple[str, ...]]:
    """Entry -> emails of the users whose shift covers ``now`` there (checked again here:
    the server was asked since = until = now)."""
    from jitctl.oncall.session import covers

    found: dict[str, set[str]] = {entry: set() for entry in wanted}
    for row in rows:
        where = row["escalation_policy"] if kind == "oncall" else row.get("schedule") or {}
        email = str((row.get("user") or {}).get("email") or "").strip().lower()
        if not email or not covers(row, now):
            continue  # no email: nobody we could compare with a caller
        for entry, pd_id in wanted.items():
            if where.get("id") == pd_id:
                found[entry].add(email)
    return {entry: tuple(sorted(emails)) for entry, emails in found.items()}


def _why(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "message", None)
    text = reason or f"PagerDuty sent an unexpected response ({type(exc).__name__})"
    return f"on-call approvers match nobody now: {text}"


def is_approver(env: Environment, role: Role, person: str, arn: str) -> bool:
    """The one rule for who may decide ``role``'s requests, with on-call entries resolved now.
    Excluding the requester is the caller's job."""
    if role.approval is None:
        return False
    if env.policy.approver_matches(role, person, arn):
        return True  # a named approver: PagerDuty is not asked
    return env.policy.approver_matches(role, person, arn, resolve(env, role).people)


def approvers_now(env: Environment, role: Role) -> list[str]:
    """Everyone who may approve ``role`` now: named approvers and whoever is on call."""
    if role.approval is None:
        return []
    return env.policy.approvers_display(role, resolve(env, role).people)
