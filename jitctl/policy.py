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
from jitctl.identity import IdentityRules, person_for
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
    check_top,
    collect_entries,
    expect_positive_int,
    expect_principal_arn,
    expect_request_ttl,
    expect_session_duration,
    expect_str,
    expect_str_list,
    expect_table,
    header_line,
    is_arn,
    load_session_policy,
    location,
    merge_identities,
    parse_groups,
    parse_session_name_roles,
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
    session_name_roles: tuple[str, ...] = ()  # [identities] session_name_roles, as written

    @property
    def identity(self) -> IdentityRules:
        """What jitctl.identity needs to turn a principal ARN into a person."""
        return IdentityRules(mapping=self.identities, session_name_roles=self.session_name_roles)

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
        jitctl.identity's rule). Excluding the requester is the
        caller's job, not this one's."""
        if role.approval is None:
            return False
        person = (person or "").strip().lower()
        rules = self.identity
        for member in _expand(role.approval.approvers, self.groups):
            if is_arn(member):
                if member == arn or (person and person_for(member, rules) == person):
                    return True
            elif person and member == person:
                return True
        return False

    def approvers_display(self, role: Role) -> list[str]:
        """Everyone who may approve ``role``: groups expanded to emails/ARNs, sorted, unique."""
        if role.approval is None:
            return []
        return sorted(set(_expand(role.approval.approvers, self.groups)))


@dataclass(frozen=True)
class PolicyCheck:
    """Every problem found in a policy set, not just the first (``jitctl policy validate``)."""

    policy: Policy | None  # None when there are errors
    errors: tuple[PolicyError, ...]
    files: tuple[Path, ...]  # the .toml files read
    role_names: tuple[str, ...]  # every role declared, valid or not, in file order


def load_policy(path: Path) -> Policy:
    """Load and check a policy file, or every ``*.toml`` file directly in a directory."""
    result = check_policy(path)
    if result.errors:
        raise result.errors[0]
    assert result.policy is not None
    return result.policy


def check_policy(path: Path) -> PolicyCheck:
    """Like load_policy, but collects the errors instead of raising the first: each file, each
    top-level key, group, identity and role is checked on its own (within one role, checking
    stops at its first error), then the cross-file checks run on what was valid."""
    try:
        files = _policy_files(Path(path))
    except PolicyError as exc:
        return PolicyCheck(policy=None, errors=(exc,), files=(), role_names=())
    errors: list[PolicyError] = []
    roles: dict[str, Role] = {}
    role_where: dict[str, str] = {}  # "file:line: role 'NAME'", for cross-file errors
    role_loc: dict[str, str] = {}  # "file:line" of the first declaration
    declared: list[str] = []
    roles_unreadable = False  # a "roles" that is not a table: "defines no roles" would repeat it
    groups: dict[str, tuple[str, ...]] = {}
    group_src: dict[str, str] = {}
    bad_groups: set[str] = set()  # declared but invalid: not "missing" in the cross checks
    identities: dict[str, str] = {}
    ident_src: dict[str, str] = {}
    trusted_roles: list[str] = []  # [identities] session_name_roles of every file
    for file in files:
        try:
            data, text = read_toml(file)
        except PolicyError as exc:
            errors.append(exc)
            continue
        errors.extend(check_top(data, file))
        where = location(file, header_line(text, "groups"))
        parsed_groups, bad = collect_entries(parse_groups, data, "groups", where, errors)
        bad_groups |= bad
        for name, members in parsed_groups.items():
            if name in groups and set(groups[name]) != set(members):
                errors.append(
                    PolicyError(
                        f"{where}: group {name!r} is already defined with other members in "
                        f"{group_src[name]}"
                    )
                )
            groups.setdefault(name, members)
            group_src.setdefault(name, where)
        where = location(file, header_line(text, "identities"))
        merge_identities(data, where, errors, identities, ident_src)
        try:
            trusted_roles.extend(parse_session_name_roles(data.get("identities"), where))
        except PolicyError as exc:
            errors.append(exc)
        try:
            raw_roles = expect_table(data.get("roles", {}), str(file), "roles")
        except PolicyError as exc:
            errors.append(exc)
            roles_unreadable = True
            continue
        for name, raw in raw_roles.items():
            loc = location(file, header_line(text, "roles", name))
            declared.append(name)
            try:
                role, where = _parse_role(name, raw, file, text)
            except PolicyError as exc:
                errors.append(exc)
                role_loc.setdefault(name, loc)
                continue
            if name in role_loc:
                errors.append(PolicyError(f"{where}: is already defined in {role_loc[name]}"))
                continue
            roles[name] = role
            role_where[name] = where
            role_loc[name] = loc
    if not declared and not roles_unreadable:
        shown = files[0] if len(files) == 1 else path
        errors.append(
            PolicyError(f"{shown}: the policy defines no roles", "add a [roles.NAME] table")
        )
    for name, role in roles.items():
        if role.approval and any(
            e.startswith(GROUP_PREFIX) and e[len(GROUP_PREFIX) :] in bad_groups
            for e in role.approval.approvers
        ):
            continue  # that group's own error is already reported
        try:
            rules = IdentityRules(identities, tuple(trusted_roles))
            _check_approvers(role, role_where[name], groups, rules)
        except PolicyError as exc:
            errors.append(exc)
    policy = None
    if not errors:
        policy = Policy(
            roles=roles,
            groups=groups,
            identities=identities,
            sources=tuple(files),
            session_name_roles=tuple(dict.fromkeys(trusted_roles)),
        )
    return PolicyCheck(
        policy=policy,
        errors=tuple(errors),
        files=tuple(files),
        role_names=tuple(dict.fromkeys(declared)),
    )


def _policy_files(path: Path) -> list[Path]:
    try:
        return _toml_files(path)
    except OSError as exc:  # e.g. a name too long to look up: bad input, not a bug
        raise PolicyError(f"{str(path)[:200]}: cannot read: {exc.strerror}") from None


def _toml_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.toml") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise PolicyError(f"{path}: no *.toml policy files in this directory")
        return files
    if path.is_file():
        return [path]
    raise PolicyError(f"{path}: policy file or directory does not exist")


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
    ttl = expect_request_ttl(table.get("request_ttl", DEFAULT_REQUEST_TTL), where, "request_ttl")
    return ApprovalRule(approvers=approvers, min_approvals=min_approvals, request_ttl=ttl)


def _check_approvers(
    role: Role, role_where: str, groups: Mapping[str, Any], rules: IdentityRules
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
        (person_for(m, rules) or m) if is_arn(m) else m
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
