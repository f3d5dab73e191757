"""`jitctl whoami` and `jitctl roles`: who the caller is to jitctl and to PagerDuty, and which
roles would fast-track them now. Reports only; `jitctl doctor` (jitctl.doctor.checks) checks setup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitctl.timeutil import rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment


def whoami(env: Environment) -> dict[str, Any]:
    """Principal, person, PagerDuty user and current on-calls (with shift ends)."""
    from jitctl.oncall.session import LookupFailed, covers

    caller = env.caller
    doc: dict[str, Any] = {
        "principal": caller.arn,
        "account": caller.account,
        "person": caller.person,
        "pagerduty_user": None,
        "on_calls": [],
        "pagerduty_error": None,
    }
    now = env.clock.now()
    session = env.pagerduty
    try:
        user = session.user(caller.person)
        doc["pagerduty_user"] = {
            "id": user["id"],
            "name": user.get("name"),
            "email": user.get("email"),
        }
        entries = session.oncalls(user["id"], now)
        doc["on_calls"] = [_oncall_entry(e) for e in entries if covers(e, now)]
    except LookupFailed as exc:
        doc["pagerduty_error"] = exc.reason
    return doc


def _oncall_entry(entry: dict[str, Any]) -> dict[str, Any]:
    schedule = entry.get("schedule") or {}
    return {
        "escalation_policy": {
            "id": entry["escalation_policy"]["id"],
            "name": entry["escalation_policy"].get("summary"),
        },
        "level": entry.get("escalation_level"),
        "schedule": {"id": schedule.get("id"), "name": schedule.get("summary")}
        if schedule
        else None,
        "start": entry.get("start"),
        "end": entry.get("end"),
    }


def roles(env: Environment) -> list[dict[str, Any]]:
    """Every role, and whether the caller would be fast-tracked now (and until when)."""
    from jitctl.chaining import cap
    from jitctl.flow import check_fast_track

    out = []
    issuer = env.identity()[0]  # who assumes the roles: you, or the broker
    fast = any(env.policy.role(n).on_call is not None for n in env.policy.roles)
    pd_error = _pagerduty_error(env) if fast else None
    for name in sorted(env.policy.roles):
        role = env.policy.role(name)
        entry: dict[str, Any] = {
            "role": name,
            "arn": role.arn,
            "description": role.description,
            "max_duration_seconds": int(role.max_duration.total_seconds()),
            # what STS will grant: 1h at most when the issuer holds role credentials
            "max_grant_seconds": cap(int(role.max_duration.total_seconds()), issuer)[0],
            "has_fast_track": role.on_call is not None,
            "approvers": env.policy.approvers_display(role) if role.approval else [],
            "min_approvals": role.approval.min_approvals if role.approval else None,
            "fast_track": False,
            "fast_track_until": None,
            "why": None,
            # PagerDuty could not answer (no token, 401, down): not the same as "not on call"
            "pagerduty_error": pd_error if role.on_call is not None else None,
        }
        if role.on_call is not None:
            result = check_fast_track(env, role, env.caller.person)
            entry["fast_track"] = result.on_call
            entry["why"] = result.reason
            if result.evidence is not None and result.evidence.end is not None:
                entry["fast_track_until"] = rfc3339(result.evidence.end)
        else:
            entry["why"] = "no on-call fast track"
        out.append(entry)
    return out


def _pagerduty_error(env: Environment) -> str | None:
    """Why PagerDuty cannot tell whether the caller is on call, or None when it can."""
    from jitctl.oncall.session import LookupFailed

    try:
        env.pagerduty.user(env.caller.person)
    except LookupFailed as exc:
        return exc.reason
    return None
