"""One role of the access policy: its ``[roles.NAME]`` table, parsed and checked on its own.

What needs the whole policy set (groups that exist, enough distinct approvers) is checked in
``jitctl.policy.load`` once every file is read; the key and value rules are ``jitctl.policy.schema``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import Where, at, header_line, location
from jitctl.errors import PolicyError
from jitctl.policy.schema import (
    APPROVAL_KEYS,
    BREAK_GLASS_KEYS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_TOTAL,
    DEFAULT_REQUEST_TTL,
    EMAIL,
    GROUP_PREFIX,
    INCIDENT_KEYS,
    MAX_TOTAL,
    MIN_DURATION,
    ON_CALL_KEYS,
    ROLE_ARN,
    ROLE_KEYS,
    ROLE_NAME,
    check_keys,
    describe,
    expect_bounded_duration,
    expect_on_call_entry,
    expect_positive_int,
    expect_principal_arn,
    expect_region,
    expect_request_ttl,
    expect_session_duration,
    expect_str,
    expect_str_list,
    expect_table,
    is_arn,
    on_call_entry,
)
from jitctl.policy.session import load_session_policy
from jitctl.timeutil import format_duration


@dataclass(frozen=True)
class OnCallRule:
    escalation_policies: tuple[str, ...]
    schedules: tuple[str, ...]
    services: tuple[str, ...]
    max_escalation_level: int | None  # None: any level


@dataclass(frozen=True)
class IncidentRule:
    services: tuple[str, ...]  # PagerDuty service ids whose open incidents fast-track
    end_with_incident: bool = False  # revoke the grant when its incident resolves


@dataclass(frozen=True)
class ApprovalRule:
    approvers: tuple[str, ...]  # as written: emails, principal ARNs, "group:NAME"
    min_approvals: int = 1
    request_ttl: timedelta = timedelta(minutes=30)
    page_service: str | None = None  # PagerDuty service paged while a request waits

    @property
    def on_call_entries(self) -> tuple[str, ...]:
        """The ``oncall:EP`` and ``schedule:S`` entries: people known only at decision time."""
        return tuple(e for e in self.approvers if on_call_entry(e) is not None)


@dataclass(frozen=True)
class BreakGlassRule:
    """``[roles.R.break_glass]``: issued at once, loudly, reviewed by an approver afterwards."""

    max_duration: timedelta


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    max_duration: timedelta
    session_policy: str | None  # minified JSON, ready for STS's Policy parameter
    session_policy_path: Path | None
    on_call: OnCallRule | None
    approval: ApprovalRule | None
    source: Path  # the file that defined it
    description: str | None = None
    break_glass: BreakGlassRule | None = None
    incident: IncidentRule | None = None
    region: str | None = None  # the jit profile's region in the AWS config file
    max_total: timedelta = timedelta(hours=12)  # a grant's whole life, extensions included


def parse_role(name: str, raw: Any, file: Path, text: str) -> tuple[Role, str]:
    line = header_line(text, "roles", name)
    where = Where(file, text, ("roles", name), f"role {name!r}")
    if not ROLE_NAME.fullmatch(name):
        raise PolicyError(
            f"{location(file, line)}: role name {name!r} is invalid: use up to 64 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit (it becomes the profile jit-NAME)"
        )
    table = expect_table(raw, where, "the role")
    check_keys(table, ROLE_KEYS, where)
    if "arn" not in table:
        raise PolicyError(f"{where}: arn is required", "the ARN of the IAM role to assume")
    arn = expect_str(table["arn"], where, "arn")
    if not ROLE_ARN.fullmatch(arn):
        raise PolicyError(
            f"{at(where, 'arn')}: arn {arn!r} is not an IAM role ARN like "
            "arn:aws:iam::123456789012:role/NAME"
        )
    max_duration = expect_session_duration(
        table.get("max_duration", DEFAULT_MAX_DURATION), where, "max_duration"
    )
    max_total = parse_max_total(table, where, max_duration)
    policy_text = policy_path = None
    if "session_policy" in table:
        policy_text, policy_path = load_session_policy(table["session_policy"], file, where)
    description = None
    if "description" in table:
        description = expect_str(table["description"], where, "description").strip()
    region = expect_region(table["region"], where) if "region" in table else None

    sub_where = where.within

    tracks = _parse_tracks(table, where, sub_where, max_duration)
    if tracks["on_call"] is None and tracks["approval"] is None and tracks["incident"] is None:
        raise PolicyError(
            f"{where}: has neither on_call nor approval (nor incident), so it could never be granted",
            f"add a [roles.{name}.approval] table (and [roles.{name}.on_call] for a fast track)",
        )
    role = Role(
        name=name,
        arn=arn,
        max_duration=max_duration,
        session_policy=policy_text,
        session_policy_path=policy_path,
        source=file,
        description=description,
        region=region,
        max_total=max_total,
        **tracks,
    )
    return role, where


def parse_max_total(table: dict[str, Any], where: str, max_duration: timedelta) -> timedelta:
    """How long a grant may last from its first issue, extensions included: at least the
    role's max_duration (a grant could never be issued whole otherwise)."""
    raw = table.get("max_total", DEFAULT_MAX_TOTAL)
    bounds = (MIN_DURATION, MAX_TOTAL)
    total = expect_bounded_duration(raw, where, "max_total", bounds, "a grant's whole life")
    if total < max_duration:
        raise PolicyError(
            f"{at(where, 'max_total')}: max_total {format_duration(total)} is shorter than "
            f"max_duration {format_duration(max_duration)}",
            "raise max_total to at least max_duration (it bounds a grant with its extensions)",
        )
    return total


def _parse_tracks(
    table: dict[str, Any], where: str, sub_where: Callable[[str], str], max_duration: timedelta
) -> dict[str, Any]:
    """The role's ways to access, each an optional sub-table: on_call and incident (fast
    tracks), approval (peers), break_glass (which needs the approval's approvers)."""
    parsers = {"incident": parse_incident, "on_call": parse_on_call, "approval": parse_approval}
    tracks: dict[str, Any] = {key: None for key in (*parsers, "break_glass")}
    for key, parse in parsers.items():
        if key in table:
            tracks[key] = parse(expect_table(table[key], where, key), sub_where(key))
    if "break_glass" in table:
        has_approval = tracks["approval"] is not None
        glass_where = sub_where("break_glass")
        tracks["break_glass"] = parse_break_glass(table, glass_where, max_duration, has_approval)
    return tracks


def parse_on_call(table: dict[str, Any], where: str) -> OnCallRule:
    check_keys(table, ON_CALL_KEYS, where)
    ids = {
        key: expect_str_list(table.get(key, []), where, key)
        for key in ("escalation_policies", "schedules", "services")
    }
    if not any(ids.values()):
        raise PolicyError(
            f"{where}: needs at least one PagerDuty id in escalation_policies, schedules or services"
        )
    level = table.get("max_escalation_level")
    if level is not None:
        level = expect_positive_int(level, where, "max_escalation_level")
    return OnCallRule(
        escalation_policies=ids["escalation_policies"],
        schedules=ids["schedules"],
        services=ids["services"],
        max_escalation_level=level,
    )


def parse_incident(table: dict[str, Any], where: str) -> IncidentRule:
    check_keys(table, INCIDENT_KEYS, where)
    services = expect_str_list(table.get("services", []), where, "services")
    if not services:
        raise PolicyError(f"{where}: services must name at least one PagerDuty service id")
    end = table.get("end_with_incident", False)
    if not isinstance(end, bool):
        raise PolicyError(f"{where}: end_with_incident must be true or false, not {describe(end)}")
    return IncidentRule(services=services, end_with_incident=end)


def parse_approval(table: dict[str, Any], where: str) -> ApprovalRule:
    check_keys(table, APPROVAL_KEYS, where)
    if "approvers" not in table:
        raise PolicyError(f"{where}: approvers is required", 'e.g. approvers = ["group:sre"]')
    approvers = expect_str_list(table["approvers"], where, "approvers")
    if not approvers:
        raise PolicyError(f"{at(where, 'approvers')}: approvers must name at least one approver")
    for entry in approvers:
        if on_call_entry(entry) is not None:
            expect_on_call_entry(entry, where)
        elif entry.startswith(GROUP_PREFIX):
            if not entry[len(GROUP_PREFIX) :].strip():
                raise PolicyError(f"{at(where, 'approvers')}: approvers: {entry!r} names no group")
        elif is_arn(entry):
            expect_principal_arn(entry, where, "approvers")
        elif not EMAIL.fullmatch(entry):
            raise PolicyError(
                f"{at(where, 'approvers')}: approvers: {entry!r} is not an email, a principal ARN, "
                "group:NAME, oncall:ESCALATION_POLICY_ID or schedule:SCHEDULE_ID"
            )
    min_approvals = expect_positive_int(table.get("min_approvals", 1), where, "min_approvals")
    ttl = expect_request_ttl(table.get("request_ttl", DEFAULT_REQUEST_TTL), where, "request_ttl")
    page = None
    if "page_service" in table:
        page = expect_str(table["page_service"], where, "page_service").strip() or None
    return ApprovalRule(
        approvers=approvers, min_approvals=min_approvals, request_ttl=ttl, page_service=page
    )


def parse_break_glass(
    role_table: dict[str, Any], where: str, role_max: timedelta, has_approval: bool
) -> BreakGlassRule:
    """At most the role's own max_duration (the smaller of the two caps a break-glass grant).
    The role's approvers review every break-glass grant, so it needs an approval table."""
    table = expect_table(role_table["break_glass"], where, "break_glass")
    if not has_approval:
        raise PolicyError(
            f"{where}: needs an approval table: its approvers review every break-glass grant",
            "add an [approval] table with approvers to the role",
        )
    check_keys(table, BREAK_GLASS_KEYS, where)
    if "max_duration" not in table:
        return BreakGlassRule(max_duration=role_max)
    cap = expect_session_duration(table["max_duration"], where, "max_duration")
    return BreakGlassRule(max_duration=min(cap, role_max))
