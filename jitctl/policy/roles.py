"""One role of the access policy: its ``[roles.NAME]`` table, parsed and checked on its own.

What needs the whole policy set (groups that exist, enough distinct approvers) is checked in
``jitctl.policy.load`` once every file is read; the key and value rules are ``jitctl.policy.schema``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import Where, at, header_line, location
from jitctl.errors import PolicyError
from jitctl.identity.rule import EMAIL
from jitctl.policy.schema import (
    APPROVAL_KEYS,
    BREAK_GLASS_KEYS,
    CLI,
    DECISION_CHANNELS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_TOTAL,
    DEFAULT_REQUEST_TTL,
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
    expect_assignment_duration,
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

ASSUME_ROLE = "assume_role"
IDENTITY_CENTER = "identity_center"
KINDS = (ASSUME_ROLE, IDENTITY_CENTER)
ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
PERMISSION_SET = re.compile(
    r"(?:arn:aws[\w-]*:sso:::permissionSet/ssoins-[0-9a-f]{16}/ps-[0-9a-f]{16}|[\w+=,.@-]{1,32})",
    re.ASCII,
)


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
    approve_from: tuple[str, ...] = (CLI,)  # where decisions may come from: "cli", "slack"
    slack_channel: str | None = None  # where Slack posts requests; None: DMs to approvers

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
    arn: str  # the IAM role assumed; "" for kind = "identity_center"
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
    kind: str = ASSUME_ROLE  # or IDENTITY_CENTER: an account assignment, not an STS session
    permission_set: str | None = None  # identity_center: a name or an ARN, as the policy writes it
    account: str = ""  # the AWS account the access is in (assume_role: the one in its ARN)

    @property
    def identity_center(self) -> bool:
        return self.kind == IDENTITY_CENTER
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
    target = _parse_target(table, where)
    max_total = parse_max_total(table, where, target["max_duration"])
    policy_text = policy_path = None
    if "session_policy" in table:
        policy_text, policy_path = load_session_policy(table["session_policy"], file, where)
    description = None
    if "description" in table:
        description = expect_str(table["description"], where, "description").strip()
    region = expect_region(table["region"], where) if "region" in table else None

    sub_where = where.within

    tracks = _parse_tracks(table, where, sub_where, target["max_duration"])
    if tracks["on_call"] is None and tracks["approval"] is None and tracks["incident"] is None:
        raise PolicyError(
            f"{where}: has neither on_call nor approval (nor incident), so it could never be granted",
            f"add a [roles.{name}.approval] table (and [roles.{name}.on_call] for a fast track)",
        )
    role = Role(
        name=name,
        max_duration=target.pop("max_duration"),
        session_policy=policy_text,
        session_policy_path=policy_path,
        source=file,
        description=description,
        region=region,
        **target,
        max_total=max_total,
        **tracks,
    )
    return role, where


def _parse_target(table: dict[str, Any], where: str) -> dict[str, Any]:
    """What the role grants: ``kind``, and the IAM role ARN (assume_role) or the permission set
    and account (identity_center); with its ``max_duration``, whose floor depends on the kind."""
    kind = expect_str(table.get("kind", ASSUME_ROLE), where, "kind")
    if kind not in KINDS:
        raise PolicyError(f"{at(where, 'kind')}: kind {kind!r} is not one of {', '.join(KINDS)}")
    raw_max = table.get("max_duration", DEFAULT_MAX_DURATION)
    if kind == IDENTITY_CENTER:
        return _identity_center_target(table, where) | {
            "max_duration": expect_assignment_duration(raw_max, where, "max_duration")
        }
    for key in ("permission_set", "account"):
        if key in table:
            raise PolicyError(
                f'{at(where, key)}: {key} is only for kind = "identity_center"',
                'remove it, or set kind = "identity_center" (and drop arn)',
            )
    if "arn" not in table:
        raise PolicyError(f"{where}: arn is required", "the ARN of the IAM role to assume")
    arn = expect_str(table["arn"], where, "arn")
    if not ROLE_ARN.fullmatch(arn):
        raise PolicyError(
            f"{at(where, 'arn')}: arn {arn!r} is not an IAM role ARN like "
            "arn:aws:iam::123456789012:role/NAME"
        )
    max_duration = expect_session_duration(raw_max, where, "max_duration")
    return {"arn": arn, "account": arn.split(":")[4], "max_duration": max_duration}


def _identity_center_target(table: dict[str, Any], where: str) -> dict[str, Any]:
    """kind = "identity_center": a permission set (name or ARN) in one account; no IAM role."""
    for key in ("arn", "session_policy"):
        if key in table:
            raise PolicyError(
                f'{at(where, key)}: {key} does not apply to kind = "identity_center"',
                "the permission set decides what the access allows; remove " + key,
            )
    for key in ("permission_set", "account"):
        if key not in table:
            raise PolicyError(
                f'{where}: {key} is required for kind = "identity_center"',
                'e.g. permission_set = "ProdAdmin", account = "111122223333"',
            )
    permission_set = expect_str(table["permission_set"], where, "permission_set")
    if not PERMISSION_SET.fullmatch(permission_set):
        raise PolicyError(
            f"{at(where, 'permission_set')}: permission_set {permission_set!r} is neither a "
            "permission set name (up to 32 of letters, digits and +=,.@_-) nor its ARN"
        )
    account = expect_str(table["account"], where, "account")
    if not ACCOUNT_ID.fullmatch(account):
        raise PolicyError(
            f"{at(where, 'account')}: account {account!r} is not a 12-digit AWS account id",
            'write it as a string: account = "111122223333"',
        )
    return {
        "arn": "",
        "kind": IDENTITY_CENTER,
        "permission_set": permission_set,
        "account": account,
    }


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
    channel = None
    if "slack_channel" in table:
        channel = expect_str(table["slack_channel"], where, "slack_channel").strip()
    return ApprovalRule(
        approvers=approvers,
        min_approvals=min_approvals,
        request_ttl=ttl,
        page_service=page,
        approve_from=_approve_from(table, where),
        slack_channel=channel,
    )


def _approve_from(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """``approve_from``: a non-empty list of "cli" and "slack" (default: the CLI alone)."""
    channels = expect_str_list(table.get("approve_from", [CLI]), where, "approve_from")
    for channel in channels:
        if channel not in DECISION_CHANNELS:
            raise PolicyError(
                f"{at(where, 'approve_from')}: approve_from: {channel!r} is not one of "
                f"{', '.join(DECISION_CHANNELS)}"
            )
    if not channels:
        raise PolicyError(f"{at(where, 'approve_from')}: approve_from must name a channel")
    return tuple(dict.fromkeys(channels))


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
