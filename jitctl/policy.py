"""The access policy: which roles exist, who is fast-tracked, who may approve.

Loaded from one ``.toml`` file or every ``*.toml`` file directly in a directory (see the
"Policy files (TOML)" section of shared/CONTRACT.md). Loading is strict: unknown keys,
wrong types and rules that could never be satisfied are PolicyErrors naming the file, the
line of the role's table header when it can be found, the role and the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from jitctl.errors import PolicyError, UsageError
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
    TOP_KEYS,
    check_keys,
    describe,
    expect_duration,
    expect_email,
    expect_positive_int,
    expect_principal_arn,
    expect_session_duration,
    expect_str,
    expect_str_list,
    expect_table,
    header_line,
    is_arn,
    load_session_policy,
    location,
    member_of,
    person_of,
    read_toml,
)
from jitctl.tomlcheck import closest


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


@dataclass(frozen=True)
class Policy:
    roles: dict[str, Role]
    groups: dict[str, tuple[str, ...]]  # members: lower-cased emails or principal ARNs
    identities: dict[str, str]  # principal ARN -> lower-cased email
    sources: tuple[Path, ...]

    def role(self, name: str) -> Role:
        """The role called ``name``; a UsageError with a suggestion if there is none."""
        if name in self.roles:
            return self.roles[name]
        guess = closest(name, self.roles)
        if guess:
            raise UsageError(f"unknown role {name!r}; did you mean {guess!r}?")
        if self.roles:
            raise UsageError(f"unknown role {name!r}; known roles: {', '.join(sorted(self.roles))}")
        raise UsageError(f"unknown role {name!r}; the policy defines no roles")

    def approver_matches(self, role: Role, person: str, arn: str) -> bool:
        """Whether the caller (person: lower-case email; arn: their principal ARN) is one of
        ``role``'s approvers. An ARN entry also matches the person it maps to (through
        ``[identities]`` or an email-shaped user/session name). Excluding the requester is the
        caller's job, not this one's."""
        if role.approval is None:
            return False
        person = (person or "").strip().lower()
        for member in _expand(role.approval.approvers, self.groups):
            if is_arn(member):
                if member == arn or (person and person_of(member, self.identities) == person):
                    return True
            elif person and member == person:
                return True
        return False

    def approvers_display(self, role: Role) -> list[str]:
        """Everyone who may approve ``role``: groups expanded to emails/ARNs, sorted, unique."""
        if role.approval is None:
            return []
        return sorted(set(_expand(role.approval.approvers, self.groups)))


def load_policy(path: Path) -> Policy:
    """Load and check a policy file, or every ``*.toml`` file directly in a directory."""
    files = _policy_files(Path(path))
    roles: dict[str, Role] = {}
    role_where: dict[str, str] = {}  # "file:line: role 'NAME'", for cross-file errors
    role_loc: dict[str, str] = {}  # "file:line"
    groups: dict[str, tuple[str, ...]] = {}
    group_src: dict[str, str] = {}
    identities: dict[str, str] = {}
    ident_src: dict[str, str] = {}
    for file in files:
        data, text = read_toml(file)
        _check_top(data, file)
        where = location(file, header_line(text, "groups"))
        for name, members in _parse_groups(data.get("groups", {}), where).items():
            if name in groups and set(groups[name]) != set(members):
                raise PolicyError(
                    f"{where}: group {name!r} is already defined with other members in "
                    f"{group_src[name]}"
                )
            groups.setdefault(name, members)
            group_src.setdefault(name, where)
        where = location(file, header_line(text, "identities"))
        for arn, email in _parse_identities(data.get("identities", {}), where).items():
            if arn in identities and identities[arn] != email:
                raise PolicyError(
                    f"{where}: identity {arn!r} maps to {email!r}, but {ident_src[arn]} maps it "
                    f"to {identities[arn]!r}"
                )
            identities.setdefault(arn, email)
            ident_src.setdefault(arn, where)
        raw_roles = expect_table(data.get("roles", {}), str(file), "roles")
        for name, raw in raw_roles.items():
            role, where = _parse_role(name, raw, file, text)
            if name in roles:
                raise PolicyError(f"{where}: is already defined in {role_loc[name]}")
            roles[name] = role
            role_where[name] = where
            role_loc[name] = location(file, header_line(text, "roles", name))
    if not roles:
        shown = files[0] if len(files) == 1 else path
        raise PolicyError(f"{shown}: the policy defines no roles", "add a [roles.NAME] table")
    for name, role in roles.items():
        _check_approvers(role, role_where[name], groups, identities)
    return Policy(roles=roles, groups=groups, identities=identities, sources=tuple(files))


def _policy_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.toml") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise PolicyError(f"{path}: no *.toml policy files in this directory")
        return files
    if path.is_file():
        return [path]
    raise PolicyError(f"{path}: policy file or directory does not exist")


def _check_top(data: dict[str, Any], file: Path) -> None:
    check_keys(data, TOP_KEYS, str(file))
    if "version" not in data:
        raise PolicyError(f"{file}: version is required", "add version = 1 at the top")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        shown = repr(version) if isinstance(version, int | str) else describe(version)
        raise PolicyError(f"{file}: version must be 1, got {shown}")


def _parse_groups(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    table = expect_table(raw, where, "groups")
    groups = {}
    for name, members in table.items():
        if not name.strip() or any(c.isspace() for c in name):
            raise PolicyError(f"{where}: group name {name!r} must be non-empty without spaces")
        key = f"groups.{name}"
        items = expect_str_list(members, where, key)
        groups[name] = tuple(dict.fromkeys(member_of(m, where, key) for m in items))
    return groups


def _parse_identities(raw: Any, where: str) -> dict[str, str]:
    table = expect_table(raw, where, "identities")
    identities = {}
    for arn, email in table.items():
        expect_principal_arn(arn, where, "identities")
        value = expect_str(email, where, "identities")
        identities[arn] = expect_email(value.strip(), where, "identities")
    return identities


def _parse_role(name: str, raw: Any, file: Path, text: str) -> tuple[Role, str]:
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

    def sub_where(key: str) -> str:
        sub_line = header_line(text, "roles", name, key) or line
        return f"{location(file, sub_line)}: role {name!r}: {key}"

    on_call = approval = None
    if "on_call" in table:
        raw_on_call = expect_table(table["on_call"], where, "on_call")
        on_call = _parse_on_call(raw_on_call, sub_where("on_call"))
    if "approval" in table:
        raw_approval = expect_table(table["approval"], where, "approval")
        approval = _parse_approval(raw_approval, sub_where("approval"))
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
    )
    return role, where


def _parse_on_call(table: dict[str, Any], where: str) -> OnCallRule:
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


def _parse_approval(table: dict[str, Any], where: str) -> ApprovalRule:
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
    ttl = expect_duration(table.get("request_ttl", DEFAULT_REQUEST_TTL), where, "request_ttl")
    return ApprovalRule(approvers=approvers, min_approvals=min_approvals, request_ttl=ttl)


def _check_approvers(
    role: Role, role_where: str, groups: Mapping[str, Any], identities: Mapping[str, str]
) -> None:
    """Cross-file checks, once every file is read: groups exist, min_approvals is reachable."""
    if role.approval is None:
        return
    where = f"{role_where}: approval"
    for entry in role.approval.approvers:
        group = entry[len(GROUP_PREFIX) :] if entry.startswith(GROUP_PREFIX) else None
        if group is not None and group not in groups:
            guess = closest(group, groups)
            known = f"did you mean 'group:{guess}'?" if guess else "define it under [groups]"
            raise PolicyError(f"{where}: approvers: group {group!r} does not exist; {known}")
    people = {
        (person_of(m, identities) or m) if is_arn(m) else m
        for m in _expand(role.approval.approvers, groups)
    }
    if role.approval.min_approvals > len(people):
        raise PolicyError(
            f"{where}: min_approvals is {role.approval.min_approvals} but the approvers are only "
            f"{len(people)} distinct {'person' if len(people) == 1 else 'people'}, so a request "
            "could never be approved",
            "add approvers or lower min_approvals (the requester never counts)",
        )


def _expand(approvers: Iterable[str], groups: Mapping[str, Iterable[str]]) -> list[str]:
    """Approver entries with groups replaced by their members; emails lower-cased."""
    members: list[str] = []
    for entry in approvers:
        if entry.startswith(GROUP_PREFIX):
            members.extend(groups.get(entry[len(GROUP_PREFIX) :], ()))
        else:
            members.append(entry if is_arn(entry) else entry.lower())
    return members
