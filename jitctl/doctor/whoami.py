"""`jitctl whoami` and `jitctl roles`: who the caller is to jitctl and to PagerDuty, and which
roles would fast-track them now. Reports only; `jitctl doctor` (jitctl.doctor.checks) checks setup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitctl.timeutil import rfc3339

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.policy.roles import Role


def whoami(env: Environment) -> dict[str, Any]:
    """Principal, person, PagerDuty user and current on-calls (with shift ends)."""
    from jitctl.oncall.client import LookupFailed
    from jitctl.oncall.session import covers

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
    """Every role, and whether the caller would be fast-tracked now (and until when), by
    either fast track: on call, or working one of the role's open incidents."""
    tracked = [env.policy.role(n) for n in env.policy.roles]
    fast = any(r.on_call is not None or r.incident is not None for r in tracked)
    pd_error = _pagerduty_error(env) if fast else None
    issuer = env.identity()[0]  # who assumes the roles: you, or the broker
    by_account = sorted(tracked, key=lambda r: (r.account, r.name))  # grouped by account
    return [_role_entry(env, role, pd_error, issuer) for role in by_account]


def fast_tracks(role: Role) -> list[str]:
    """The role's fast tracks by name: "on_call", "incident" (none: approval only)."""
    return [name for name, rule in (("on_call", role.on_call), ("incident", role.incident)) if rule]


def _role_entry(
    env: Environment, role: Role, pd_error: str | None, issuer: str
) -> dict[str, Any]:
    from jitctl.lifecycle.chaining import cap

    tracks = fast_tracks(role)
    entry: dict[str, Any] = {
        "role": role.name,
        "arn": role.arn,
        "kind": role.kind,
        "account": role.account,
        "permission_set": role.permission_set,
        "description": role.description,
        "max_duration_seconds": int(role.max_duration.total_seconds()),
        # what STS will grant: 1h at most when the issuer holds role credentials (an
        # identity_center grant is no STS session: no such cap)
        "max_grant_seconds": int(role.max_duration.total_seconds())
        if role.identity_center
        else cap(int(role.max_duration.total_seconds()), issuer)[0],
        "has_fast_track": bool(tracks),
        "fast_tracks": tracks,
        "incident_services": list(role.incident.services) if role.incident else [],
        "approvers": env.policy.approvers_display(role) if role.approval else [],
        "min_approvals": role.approval.min_approvals if role.approval else None,
        "fast_track": False,
        "fast_track_until": None,
        "why": None if tracks else "no fast track (neither on call nor incident)",
        # PagerDuty could not answer (no token, 401, down): not the same as "not on call"
        "pagerduty_error": pd_error if tracks else None,
    }
    whys = []
    if role.on_call is not None:
        from jitctl.lifecycle.flow import check_fast_track

        result = check_fast_track(env, role, env.caller.person)
        entry["fast_track"] = result.on_call
        whys.append(result.reason)
        if result.on_call and result.evidence is not None and result.evidence.end is not None:
            entry["fast_track_until"] = rfc3339(result.evidence.end)
    if role.incident is not None and not entry["fast_track"]:
        from jitctl.oncall.incident_track import check_submit

        track = check_submit(env, role, None)
        entry["fast_track"] = track.fast
        whys = [track.reason] if track.fast else [*whys, track.reason]
    if whys:
        entry["why"] = "; ".join(whys)
    return entry


def _pagerduty_error(env: Environment) -> str | None:
    """Why PagerDuty cannot tell whether the caller is on call, or None when it can."""
    from jitctl.oncall.client import LookupFailed

    try:
        env.pagerduty.user(env.caller.person)
    except LookupFailed as exc:
        return exc.reason
    return None
