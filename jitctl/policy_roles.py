"""One role of the access policy: its ``[roles.NAME]`` table, parsed and checked on its own.

What needs the whole policy set (groups that exist, enough distinct approvers) is checked in
``jitctl.policy`` once every file is read; the key and value rules are ``jitctl.policy_schema``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from jitctl.errors import PolicyError
from jitctl.policy_schema import (
    APPROVAL_KEYS,
    DEFAULT_MAX_DURATION,
    DEFAULT_REQUEST_TTL,
    EMAIL,
    GROUP_PREFIX,
    ON_CALL_KEYS,
    ROLE_ARN,
    ROLE_KEYS,
    ROLE_NAME,
    check_keys,
    expect_positive_int,
    expect_principal_arn,
    expect_region,
    expect_request_ttl,
    expect_session_duration,
    expect_str,
    expect_str_list,
    expect_table,
    header_line,
    is_arn,
    load_session_policy,
    location,
)


@dataclass(frozen=True)
class OnCallRule:
    escalation_policies: tuple[str, ...]
    schedules: tuple[str, ...]
    services: tuple[str, ...]
    max_escalation_level: int | None  # None: any level


@dataclass(frozen=True)
class ApprovalRule:
    approvers: tuple[str, ...]  # as written: emails, principal ARNs, "group:NAME"
    min_approvals: int = 1
    request_ttl: timedelta = timedelta(minutes=30)


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
    region: str | None = None  # the jit profile's region in the AWS config file


def parse_role(name: str, raw: Any, file: Path, text: str) -> tuple[Role, str]:
    line = header_line(text, "roles", name)
    where = f"{location(file, line)}: role {name!r}"
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
            f"{where}: arn {arn!r} is not an IAM role ARN like arn:aws:iam::123456789012:role/NAME"
        )
    max_duration = expect_session_duration(
        table.get("max_duration", DEFAULT_MAX_DURATION), where, "max_duration"
    )
    policy_text = policy_path = None
    if "session_policy" in table:
        policy_text, policy_path = load_session_policy(table["session_policy"], file, where)
    description = None
    if "description" in table:
        description = expect_str(table["description"], where, "description").strip()
    region = expect_region(table["region"], where) if "region" in table else None

    def sub_where(key: str) -> str:
        sub_line = header_line(text, "roles", name, key) or line
        return f"{location(file, sub_line)}: role {name!r}: {key}"

    on_call = approval = None
    if "on_call" in table:
        raw_on_call = expect_table(table["on_call"], where, "on_call")
        on_call = parse_on_call(raw_on_call, sub_where("on_call"))
    if "approval" in table:
        raw_approval = expect_table(table["approval"], where, "approval")
        approval = parse_approval(raw_approval, sub_where("approval"))
    if on_call is None and approval is None:
        raise PolicyError(
            f"{where}: has neither on_call nor approval, so it could never be granted",
            f"add a [roles.{name}.approval] table (and [roles.{name}.on_call] for a fast track)",
        )
    role = Role(
        name=name,
        arn=arn,
        max_duration=max_duration,
        session_policy=policy_text,
        session_policy_path=policy_path,
        on_call=on_call,
        approval=approval,
        source=file,
        description=description,
        region=region,
    )
    return role, where


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


def parse_approval(table: dict[str, Any], where: str) -> ApprovalRule:
    check_keys(table, APPROVAL_KEYS, where)
    if "approvers" not in table:
        raise PolicyError(f"{where}: approvers is required", 'e.g. approvers = ["group:sre"]')
    approvers = expect_str_list(table["approvers"], where, "approvers")
    if not approvers:
        raise PolicyError(f"{where}: approvers must name at least one approver")
    for entry in approvers:
        if entry.startswith(GROUP_PREFIX):
            if not entry[len(GROUP_PREFIX) :].strip():
                raise PolicyError(f"{where}: approvers: {entry!r} names no group")
        elif is_arn(entry):
            expect_principal_arn(entry, where, "approvers")
        elif not EMAIL.fullmatch(entry):
            raise PolicyError(
                f"{where}: approvers: {entry!r} is not an email, a principal ARN or group:NAME"
            )
    min_approvals = expect_positive_int(table.get("min_approvals", 1), where, "min_approvals")
    ttl = expect_request_ttl(table.get("request_ttl", DEFAULT_REQUEST_TTL), where, "request_ttl")
    return ApprovalRule(approvers=approvers, min_approvals=min_approvals, request_ttl=ttl)
