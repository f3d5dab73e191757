"""The access policy: which roles exist, who is fast-tracked, who may approve.

Loaded from one ``.toml`` file or every ``*.toml`` file directly in a directory (see the
"Policy files (TOML)" section of shared/CONTRACT.md). Loading is strict: unknown keys,
wrong types and rules that could never be satisfied are PolicyErrors naming the file, the
line of the role's table header when it can be found, the role and the key.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import Where, at, closest, header_line, location
from jitctl.errors import PolicyError, UsageError
from jitctl.identity.rule import IdentityRules, person_for
from jitctl.policy.roles import Role, parse_role
from jitctl.policy.schema import (
    GROUP_PREFIX,
    check_top,
    collect_entries,
    expect_table,
    is_arn,
    merge_identities,
    on_call_entry,
    parse_groups,
    parse_session_name_roles,
    read_toml,
)


@dataclass(frozen=True)
class Policy:
    roles: dict[str, Role]
    groups: dict[str, tuple[str, ...]]  # members: lower-cased emails or principal ARNs
    identities: dict[str, str]  # principal ARN (or "slack:USER_ID") -> lower-cased email
    sources: tuple[Path, ...]
    session_name_roles: tuple[str, ...] = ()  # [identities] session_name_roles, as written

    @property
    def identity(self) -> IdentityRules:
        """What jitctl.identity.rule needs to turn a principal ARN into a person."""
        return IdentityRules(
            mapping={k: v for k, v in self.identities.items() if not k.startswith("slack:")},
            session_name_roles=self.session_name_roles,
            issued_roles={r.arn: name for name, r in self.roles.items()},
        )

    def slack_person(self, user_id: str) -> str | None:
        """The person an ``[identities] "slack:USER_ID"`` entry names, if any."""
        return self.identities.get(f"slack:{user_id}")

    def role(self, name: str) -> Role:
        """The role called ``name``; a UsageError with a suggestion if there is none."""
        if name in self.roles:
            return self.roles[name]
        raise unknown_role(name, self.roles)

    def approver_matches(
        self,
        role: Role,
        person: str,
        arn: str,
        on_call: Mapping[str, Collection[str]] | None = None,
    ) -> bool:
        """Whether the caller (person: lower-case email; arn: their principal ARN) is one of
        ``role``'s approvers. An ARN entry also matches the person it maps to (through
        jitctl.identity.rule's rule). ``on_call`` maps each ``oncall:``/``schedule:`` entry to the
        people on call there now (jitctl.oncall.approvers resolves it); without it those
        entries match nobody. Excluding the requester is the caller's job, not this one's."""
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
        return bool(person) and any(
            person in (on_call or {}).get(entry, ()) for entry in role.approval.on_call_entries
        )

    def approvers_display(
        self, role: Role, on_call: Mapping[str, Collection[str]] | None = None
    ) -> list[str]:
        """Everyone who may approve ``role``: groups expanded to emails/ARNs and on-call
        entries to whoever ``on_call`` says is on call there now; sorted, unique."""
        if role.approval is None:
            return []
        now_on_call = [p for e in role.approval.on_call_entries for p in (on_call or {}).get(e, ())]
        return sorted(set(_expand(role.approval.approvers, self.groups)) | set(now_on_call))


def unknown_role(name: str, known: Iterable[str]) -> UsageError:
    """The error for a role name the policy does not define, naming the closest one."""
    names = sorted(known)
    guess = closest(name, names)
    if guess:
        return UsageError(f"unknown role {name!r}; did you mean {guess!r}?")
    if names:
        return UsageError(f"unknown role {name!r}; known roles: {', '.join(names)}")
    return UsageError(f"unknown role {name!r}; the policy defines no roles")


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
    found = _Found()
    for file in files:
        _read_file(file, found)
    if not found.declared and not found.roles_unreadable:
        shown = files[0] if len(files) == 1 else path
        found.errors.append(
            PolicyError(f"{shown}: the policy defines no roles", "add a [roles.NAME] table")
        )
    _cross_check(found)
    policy = None
    if not found.errors:
        policy = Policy(
            roles=found.roles,
            groups=found.groups,
            identities=found.identities,
            sources=tuple(files),
            session_name_roles=tuple(dict.fromkeys(found.trusted_roles)),
        )
    return PolicyCheck(
        policy=policy,
        errors=tuple(found.errors),
        files=tuple(files),
        role_names=tuple(dict.fromkeys(found.declared)),
    )


@dataclass
class _Found:
    """What `check_policy` has gathered so far, across files, valid or not."""

    errors: list[PolicyError] = field(default_factory=list)
    roles: dict[str, Role] = field(default_factory=dict)
    role_where: dict[str, str] = field(default_factory=dict)  # "file:line: role 'NAME'"
    role_loc: dict[str, str] = field(default_factory=dict)  # "file:line" of the first one
    declared: list[str] = field(default_factory=list)
    roles_unreadable: bool = False  # "roles" not a table: "defines no roles" would repeat it
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_src: dict[str, str] = field(default_factory=dict)
    bad_groups: set[str] = field(default_factory=set)  # invalid, not "missing" in cross checks
    identities: dict[str, str] = field(default_factory=dict)
    ident_src: dict[str, str] = field(default_factory=dict)
    trusted_roles: list[str] = field(default_factory=list)  # every file's session_name_roles


def _read_file(file: Path, found: _Found) -> None:
    """One policy file's groups, identities and roles, each checked on its own."""
    try:
        data, text = read_toml(file)
    except PolicyError as exc:
        found.errors.append(exc)
        return
    found.errors.extend(check_top(data, file, text))
    _merge_groups(data, Where(file, text, ("groups",)), found)
    where = Where(file, text, ("identities",))
    merge_identities(data, where, found.errors, found.identities, found.ident_src)
    try:
        found.trusted_roles.extend(parse_session_name_roles(data.get("identities"), where))
    except PolicyError as exc:
        found.errors.append(exc)
    try:
        raw_roles = expect_table(data.get("roles", {}), str(file), "roles")
    except PolicyError as exc:
        found.errors.append(exc)
        found.roles_unreadable = True
        return
    for name, raw in raw_roles.items():
        _add_role(name, raw, file, text, found)


def _merge_groups(data: dict[str, Any], where: str, found: _Found) -> None:
    """A group may be repeated in another file only with the same members."""
    parsed, bad = collect_entries(parse_groups, data, "groups", where, found.errors)
    found.bad_groups |= bad
    for name, members in parsed.items():
        if name in found.groups and set(found.groups[name]) != set(members):
            found.errors.append(
                PolicyError(
                    f"{at(where, name)}: group {name!r} is already defined with other members in "
                    f"{found.group_src[name]}"
                )
            )
        found.groups.setdefault(name, members)
        found.group_src.setdefault(name, where)


def _add_role(name: str, raw: Any, file: Path, text: str, found: _Found) -> None:
    """A role is defined once; an invalid one still claims its name for that check."""
    loc = location(file, header_line(text, "roles", name))
    found.declared.append(name)
    try:
        role, where = parse_role(name, raw, file, text)
    except PolicyError as exc:
        found.errors.append(exc)
        found.role_loc.setdefault(name, loc)
        return
    if name in found.role_loc:
        found.errors.append(PolicyError(f"{where}: is already defined in {found.role_loc[name]}"))
        return
    found.roles[name] = role
    found.role_where[name] = where
    found.role_loc[name] = loc


def _cross_check(found: _Found) -> None:
    """Checks that need every file: each valid role's approvers exist and can be enough."""
    for name, role in found.roles.items():
        if role.approval and any(
            e.startswith(GROUP_PREFIX) and e[len(GROUP_PREFIX) :] in found.bad_groups
            for e in role.approval.approvers
        ):
            continue  # that group's own error is already reported
        try:
            rules = IdentityRules(found.identities, tuple(found.trusted_roles))
            _check_approvers(role, found.role_where[name], found.groups, rules)
        except PolicyError as exc:
            found.errors.append(exc)


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


def _check_approvers(
    role: Role, role_where: str, groups: Mapping[str, Any], rules: IdentityRules
) -> None:
    """Cross-file checks, once every file is read: groups exist, min_approvals is reachable."""
    if role.approval is None:
        return
    where = (
        role_where.within("approval")
        if isinstance(role_where, Where)
        else f"{role_where}: approval"
    )
    for entry in role.approval.approvers:
        group = entry[len(GROUP_PREFIX) :] if entry.startswith(GROUP_PREFIX) else None
        if group is not None and group not in groups:
            guess = closest(group, groups)
            known = f"did you mean 'group:{guess}'?" if guess else "define it under [groups]"
            raise PolicyError(
                f"{at(where, 'approvers')}: approvers: group {group!r} does not exist; {known}"
            )
    people = {
        (person_for(m, rules) or m) if is_arn(m) else m
        for m in _expand(role.approval.approvers, groups)
    }
    # Each on-call entry may bring one more person (whoever is on call there then).
    reachable = len(people) + len(role.approval.on_call_entries)
    if role.approval.min_approvals > reachable:
        raise PolicyError(
            f"{at(where, 'min_approvals')}: min_approvals is {role.approval.min_approvals} but "
            "the approvers are only "
            f"{reachable} distinct {'person' if reachable == 1 else 'people'}, so a request "
            "could never be approved",
            "add approvers or lower min_approvals (the requester never counts)",
        )


def _expand(approvers: Iterable[str], groups: Mapping[str, Iterable[str]]) -> list[str]:
    """Approver entries with groups replaced by their members; emails lower-cased. On-call
    entries name nobody until resolved (Policy.approver_matches takes them apart)."""
    members: list[str] = []
    for entry in approvers:
        if on_call_entry(entry) is not None:
            continue
        if entry.startswith(GROUP_PREFIX):
            members.extend(groups.get(entry[len(GROUP_PREFIX) :], ()))
        else:
            members.append(entry if is_arn(entry) else entry.lower())
    return members
