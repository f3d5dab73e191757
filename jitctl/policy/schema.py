"""Low-level checks for policy files: shapes, types, names, and where an error points.

jitctl.policy.load builds the dataclasses; this module only knows about raw TOML values. Every
failure is a PolicyError whose message starts with ``where`` (the file, maybe a line, the
role and the key), so a user can find the mistake without reading code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from jitctl.config.tomlcheck import (
    TomlError,
    Where,
    at,
    first_unknown_key,
    location,
    parse_toml,
    unknown_key_message,
)
from jitctl.errors import PolicyError
from jitctl.identity.rule import EMAIL, PARTITIONS
from jitctl.timeutil import format_duration, parse_duration

TOP_KEYS = frozenset({"version", "identities", "groups", "roles"})
ROLE_KEYS = frozenset(
    {
        "arn",
        "kind",
        "permission_set",
        "account",
        "max_duration",
        "max_total",
        "session_policy",
        "description",
        "region",
        "on_call",
        "approval",
        "incident",
        "break_glass",
    }
)
INCIDENT_KEYS = frozenset({"services", "end_with_incident"})
ON_CALL_KEYS = frozenset({"escalation_policies", "schedules", "services", "max_escalation_level"})
APPROVAL_KEYS = frozenset(
    {"approvers", "min_approvals", "request_ttl", "page_service", "approve_from", "slack_channel"}
)
# Where a decision on a role may come from (``approve_from``): the CLI (an AWS identity) or a
# Slack button (a Slack sign-in: opt-in per role, jitctl.slack).
CLI, SLACK = "cli", "slack"
DECISION_CHANNELS = (CLI, SLACK)
# [identities] "slack:U0123ABCD" = "email": a Slack user the admin vouches for.
SLACK_USER = re.compile(r"slack:[UW][A-Z0-9]{2,30}", re.ASCII)
BREAK_GLASS_KEYS = frozenset({"max_duration"})

# STS AssumeRole: DurationSeconds 900..43200, Policy (plaintext) at most 2048 characters.
MIN_DURATION = timedelta(minutes=15)
# An identity_center grant is an account assignment, not an STS session: no 15-minute floor.
MIN_ASSIGNMENT = timedelta(minutes=1)
MAX_DURATION = timedelta(hours=12)
# A pending request outlives its request_ttl by nothing; a week is already generous.
MAX_REQUEST_TTL = timedelta(days=7)
DEFAULT_MAX_DURATION = "1h"
# A grant's whole life, extensions included (jitctl.lifecycle.extend), from its first issue.
DEFAULT_MAX_TOTAL = "12h"
MAX_TOTAL = timedelta(days=7)
DEFAULT_REQUEST_TTL = "30m"

ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PARTITION = "(?:" + "|".join(PARTITIONS) + ")"
ROLE_ARN = re.compile(
    rf"arn:{_PARTITION}:iam::\d{{12}}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]+", re.ASCII
)
PRINCIPAL_ARN = re.compile(rf"arn:{_PARTITION}:(?:iam|sts)::\d{{12}}:[\w+=,.@/-]+", re.ASCII)
# session_name_roles: a role ARN without its path (assumed-role ARNs carry none). Partition and
# 12-digit account are literal: a glob there would trust a same-named role in any account, one
# the caller owns included. Globs go in the role name only.
ROLE_GLOB = re.compile(
    rf"arn:{_PARTITION}:iam::\d{{12}}:role/(?P<name>[\w+=,.@*?\[\]!-]+)", re.ASCII
)
SESSION_NAME_ROLES = "session_name_roles"
GROUP_PREFIX = "group:"
# Approver entries that name whoever is on call there now (jitctl.oncall.approvers).
ONCALL_PREFIX = "oncall:"
SCHEDULE_PREFIX = "schedule:"
PAGERDUTY_ID = re.compile(r"[A-Z0-9]{2,32}", re.ASCII)


def on_call_entry(entry: str) -> tuple[str, str] | None:
    """("oncall"/"schedule", PagerDuty id) for an on-call approver entry, else None."""
    for prefix in (ONCALL_PREFIX, SCHEDULE_PREFIX):
        if entry.startswith(prefix):
            return prefix[:-1], entry[len(prefix) :]
    return None


def expect_on_call_entry(entry: str, where: str) -> str:
    """``oncall:EP`` or ``schedule:S`` with a PagerDuty id (upper-case letters and digits)."""
    kind, pd_id = on_call_entry(entry) or ("", "")
    if not PAGERDUTY_ID.fullmatch(pd_id):
        what = "escalation policy" if kind == "oncall" else "schedule"
        raise PolicyError(
            f"{at(where, 'approvers')}: approvers: {entry!r} does not name a PagerDuty {what} id",
            f"write {kind}:ID with the id from PagerDuty, e.g. {kind}:PABC123",
        )
    return entry


def describe(value: Any) -> str:
    """'a string', 'an integer'... for type errors (bool before int: bool is an int in Python)."""
    if isinstance(value, bool):
        return "a boolean"
    for kind, name in (
        (str, "a string"),
        (int, "an integer"),
        (float, "a float"),
        (list, "a list"),
        (dict, "a table"),
        (datetime, "a date/time"),
    ):
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed document and its raw text (for line numbers)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from exc
    try:
        return parse_toml(raw)
    except TomlError as exc:
        raise PolicyError(f"{location(path, exc.line)}: not valid TOML: {exc}") from None


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    key = first_unknown_key(table, allowed)
    if key is not None:
        raise PolicyError(unknown_key_message(key, allowed, at(where, key)))


def expect_table(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{at(where, what)}: {what} must be a table, got {describe(value)}")
    return value


def expect_str(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "an empty string" if isinstance(value, str) else describe(value)
        raise PolicyError(f"{at(where, key)}: {key} must be a non-empty string, got {got}")
    return value


# An AWS region name as botocore accepts it in a config file: us-east-1, eu-west-1,
# us-gov-west-1, cn-north-1, ap-southeast-5...
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


def expect_region(value: Any, where: str) -> str:
    region = expect_str(value, where, "region").strip()
    if not REGION.fullmatch(region):
        raise PolicyError(
            f"{where}: region {region[:60]!r} is not an AWS region name", 'e.g. "eu-west-1"'
        )
    return region


def expect_str_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise PolicyError(
            f"{at(where, key)}: {key} must be a list of strings, got {describe(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            got = "an empty string" if isinstance(item, str) else describe(item)
            raise PolicyError(f"{at(where, key)}: {key}[{i}] must be a non-empty string, got {got}")
    return tuple(item.strip() for item in value)


def expect_positive_int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{at(where, key)}: {key} must be an integer, got {describe(value)}")
    if value < 1:
        raise PolicyError(f"{at(where, key)}: {key} must be at least 1, got {value}")
    return value


def expect_duration(value: Any, where: str, key: str) -> timedelta:
    if not isinstance(value, str):
        raise PolicyError(
            f'{at(where, key)}: {key} must be a duration string like "15m" or "1h30m", got {describe(value)}'
        )
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PolicyError(f"{at(where, key)}: {key}: {exc}") from exc


def expect_session_duration(value: Any, where: str, key: str) -> timedelta:
    return expect_bounded_duration(
        value, where, key, (MIN_DURATION, MAX_DURATION), "STS session limits"
    )


def expect_assignment_duration(value: Any, where: str, key: str) -> timedelta:
    return expect_bounded_duration(
        value, where, key, (MIN_ASSIGNMENT, MAX_DURATION), "an identity_center grant"
    )


def expect_request_ttl(value: Any, where: str, key: str) -> timedelta:
    return expect_bounded_duration(
        value, where, key, (timedelta(minutes=1), MAX_REQUEST_TTL), "a request waits at most that"
    )


def expect_bounded_duration(
    value: Any, where: str, key: str, bounds: tuple[timedelta, timedelta], why: str
) -> timedelta:
    duration = expect_duration(value, where, key)
    low, high = bounds
    if not low <= duration <= high:
        raise PolicyError(
            f"{at(where, key)}: {key} must be between {format_duration(low)} and "
            f"{format_duration(high)} ({why}), got {value!r}"
        )
    return duration


def expect_email(value: str, where: str, key: str) -> str:
    if not EMAIL.fullmatch(value):
        raise PolicyError(
            f"{at(where, key)}: {key}: {value!r} is not an email address like alice@example.com"
        )
    return value.lower()


def expect_principal_arn(value: str, where: str, key: str) -> str:
    if not PRINCIPAL_ARN.fullmatch(value):
        raise PolicyError(
            f"{at(where, key)}: {key}: {value!r} is not a principal ARN like "
            "arn:aws:iam::123456789012:user/NAME or arn:aws:sts::123456789012:assumed-role/ROLE/SESSION"
        )
    return value


def expect_slack_user(value: str, where: str) -> str:
    if not SLACK_USER.fullmatch(value):
        raise PolicyError(
            f"{at(where, value)}: identities: {value!r} is not a Slack user id like slack:U0123ABCD"
        )
    return value


def is_arn(member: str) -> bool:
    return member.startswith("arn:")


def member_of(value: str, where: str, key: str) -> str:
    """A group member or identity: an email (lower-cased) or a principal ARN (as written)."""
    if is_arn(value):
        return expect_principal_arn(value, where, key)
    if EMAIL.fullmatch(value):
        return value.lower()
    raise PolicyError(
        f"{at(where, key)}: {key}: {value!r} is neither an email address nor a principal ARN"
    )


def check_top(data: dict[str, Any], file: Path, text: str = "") -> list[PolicyError]:
    top = Where(file, text, ())
    errors = [
        PolicyError(unknown_key_message(key, TOP_KEYS, top.at(key)))
        for key in data
        if key not in TOP_KEYS
    ]
    if "version" not in data:
        errors.append(PolicyError(f"{file}: version is required", "add version = 1 at the top"))
        return errors
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        shown = repr(version) if isinstance(version, int | str) else describe(version)
        errors.append(PolicyError(f"{top.at('version')}: version must be 1, got {shown}"))
    return errors


def parse_groups(
    table: dict[str, Any], where: str, errors: list[PolicyError]
) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """The valid groups, and the names of the invalid ones (their errors go to ``errors``)."""
    groups, bad = {}, set()
    for name, members in table.items():
        try:
            if not name.strip() or any(c.isspace() for c in name):
                raise PolicyError(
                    f"{at(where, name)}: group name {name!r} must be non-empty without spaces"
                )
            key = f"groups.{name}"
            items = expect_str_list(members, where, key)
            groups[name] = tuple(dict.fromkeys(member_of(m, where, key) for m in items))
        except PolicyError as exc:
            errors.append(exc)
            bad.add(name)
    return groups, bad


def parse_identities(
    table: dict[str, Any], where: str, errors: list[PolicyError]
) -> tuple[dict[str, str], set[str]]:
    """The ARN -> person entries of [identities] (session_name_roles is read on its own)."""
    identities, bad = {}, set()
    for arn, email in table.items():
        if arn == SESSION_NAME_ROLES:
            continue
        try:
            if arn.startswith("slack:"):
                expect_slack_user(arn, where)
            else:
                expect_principal_arn(arn, where, "identities")
            value = expect_str(email, where, "identities")
            identities[arn] = expect_email(value.strip(), where, "identities")
        except PolicyError as exc:
            errors.append(exc)
            bad.add(arn)
    return identities, bad


def parse_session_name_roles(table: Any, where: str) -> tuple[str, ...]:
    """[identities] session_name_roles: roles whose session names the admin vouches for."""
    if not isinstance(table, dict) or SESSION_NAME_ROLES not in table:
        return ()
    key = f"identities.{SESSION_NAME_ROLES}"
    return tuple(
        expect_role_glob(p, where, key)
        for p in expect_str_list(table[SESSION_NAME_ROLES], where, key)
    )


def expect_role_glob(value: str, where: str, key: str) -> str:
    m = ROLE_GLOB.fullmatch(value)
    if m is None:
        raise PolicyError(
            f"{at(where, key)}: {key}: {value!r} is not a role ARN like "
            "arn:aws:iam::123456789012:role/NAME (a literal account; globs * ? [..] in NAME; "
            "no role path: assumed-role ARNs carry none)"
        )
    if not m["name"].strip("*?"):
        raise PolicyError(
            f"{at(where, key)}: {key}: {value!r} would trust the session names of every role, which "
            "whoever assumes a role chooses",
            "name the roles whose session names only AWS or a trusted system sets",
        )
    return value


E = TypeVar("E")  # what one entry parses to (a group's members, a role)
EntryParser = Callable[[dict[str, Any], str, list[PolicyError]], tuple[dict[str, E], set[str]]]


def collect_entries(
    parse: EntryParser[E], data: dict[str, Any], key: str, where: str, errors: list[PolicyError]
) -> tuple[dict[str, E], set[str]]:
    """Run a per-entry table parser that reports into ``errors``; a non-table is one error."""
    try:
        table = expect_table(data.get(key, {}), where, key)
    except PolicyError as exc:
        errors.append(exc)
        return {}, set()
    return parse(table, where, errors)


def merge_identities(
    data: dict[str, Any],
    where: str,
    errors: list[PolicyError],
    identities: dict[str, str],
    ident_src: dict[str, str],
) -> None:
    """Add one file's [identities] entries; one ARN mapped to two people is an error."""
    parsed_ids, _ = collect_entries(parse_identities, data, "identities", where, errors)
    for arn, email in parsed_ids.items():
        if arn in identities and identities[arn] != email:
            errors.append(
                PolicyError(
                    f"{at(where, arn)}: identity {arn!r} maps to {email!r}, but {ident_src[arn]} "
                    f"maps it to {identities[arn]!r}"
                )
            )
        identities.setdefault(arn, email)
        ident_src.setdefault(arn, where)
