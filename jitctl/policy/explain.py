"""The policy tools behind ``jitctl policy``: validate policy files, explain a role.

``validate`` finds every problem in the policy sets that its paths name (not just the first);
``explain`` turns one role into a plain, JSON-ready description of who gets in and how. No
typer or rich here: jitctl.cli.policy_cmd renders what these return.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import TomlError, parse_toml
from jitctl.errors import PolicyError
from jitctl.identity.rule import EMAIL, person_for
from jitctl.lifecycle.chaining import too_long
from jitctl.lifecycle.request_rules import DEFAULT_DURATION
from jitctl.oncall.approvers import OnCallApprovers
from jitctl.policy.load import Policy, check_policy
from jitctl.policy.roles import Role
from jitctl.policy.schema import GROUP_PREFIX, MIN_DURATION, is_arn
from jitctl.timeutil import format_duration

WHO_MAY_REQUEST = (
    "anyone whose AWS principal maps to a person: through the policy's [identities], an IAM "
    "user named by email, or an assumed-role session named by email for IAM Identity Center "
    "roles and roles listed in [identities] session_name_roles, as IAM records them (iam:GetRole: "
    "the role's unique id, and Identity Center's path), never by a role's name"
)
REAL_GATE = (
    "jitctl assumes the role with the requester's own credentials, so the role's trust policy "
    "in IAM (and who may call sts:AssumeRole on it) is the real gate, not this file"
)
UNREDUCED = "the role's own permissions, unreduced (no session_policy)"
OWN_REQUEST = "a requester can never approve their own request"


# --- validate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    file: str | None
    line: int | None
    message: str  # without the "file:line: " prefix

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class Validation:
    files: tuple[Path, ...]  # policy .toml files read
    session_policies: tuple[Path, ...]  # session-policy JSON files the valid roles reference
    roles: tuple[str, ...]  # roles declared (valid or not)
    errors: tuple[Finding, ...]
    skipped: tuple[str, ...] = ()  # arguments that are no policy's business (e.g. other JSON)
    over_1h: tuple[str, ...] = ()  # roles whose max_duration role chaining cannot issue
    identity_center: tuple[Any, ...] = ()  # identity_center roles (their sessions: in AWS)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        def count(n: int, one: str, many: str) -> str:
            return f"{n} {one if n == 1 else many}"

        parts = [count(len(self.files), "file", "files"), count(len(self.roles), "role", "roles")]
        if self.session_policies:
            n = len(self.session_policies)
            parts.append(count(n, "session policy", "session policies"))
        verdict = "ok" if self.ok else count(len(self.errors), "error", "errors")
        return f"{', '.join(parts)}: {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": [str(f) for f in self.files],
            "session_policies": [str(p) for p in self.session_policies],
            "roles": list(self.roles),
            "errors": [e.to_json() for e in self.errors],
            "skipped": list(self.skipped),
            "over_chaining_limit": list(self.over_1h),
        }


def _toml_siblings(directory: Path) -> list[Path]:
    # the same selection as load_policy makes for a directory
    return [p for p in directory.glob("*.toml") if p.is_file() and not p.name.startswith(".")]


def policy_target(path: Path) -> Path | None:
    """What to load to check ``path``; None if it is no policy's business.

    A directory is its set. A .toml file is read together with the other .toml files of its
    directory when there are any: a directory is one policy (roles in one file may use groups
    or identities from another), so reading one file alone would report those groups as
    missing; `validate` then reports that file's findings alone. Any other file (a
    session-policy JSON) is checked as part of the nearest policy directory above it whose
    roles reference it.
    """
    if path.is_dir():
        return path
    if path.suffix == ".toml":
        if not path.name.startswith(".") and len(_toml_siblings(path.parent)) > 1:
            return path.parent
        return path
    for directory in path.parents:
        if _references(directory, path):
            return directory
    return None


def _references(directory: Path, target: Path) -> bool:
    """Whether a role in ``directory``'s policy files names ``target`` as its session_policy."""
    want = target.resolve()
    for file in _toml_siblings(directory) if directory.is_dir() else ():
        try:
            roles = parse_toml(file.read_bytes())[0].get("roles", {})
        except (OSError, TomlError):
            continue  # validating the directory reports it, if it is ever a target
        for raw in roles.values() if isinstance(roles, dict) else ():
            rel = raw.get("session_policy") if isinstance(raw, dict) else None
            if isinstance(rel, str) and (file.parent / Path(rel).expanduser()).resolve() == want:
                return True
    return False


def validate(paths: Iterable[Path]) -> Validation:
    """Check the policy sets ``paths`` name (see policy_target), collecting every error."""
    targets: dict[Path, Path] = {}  # resolved -> as given
    # resolved target -> the files named in it whose findings alone are reported (None: all):
    # a file is read with its set, for the groups its roles use, but it is the file named
    focus: dict[Path, set[Path] | None] = {}
    errors: list[Finding] = []
    skipped: list[str] = []
    for path in paths:
        path = Path(path)
        try:
            exists = path.exists()
        except OSError as exc:  # e.g. a name too long to look up: `validate` never crashes
            errors.append(Finding(str(path)[:200], None, f"cannot use this path: {exc.strerror}"))
            continue
        if not exists:
            errors.append(Finding(str(path), None, "policy file or directory does not exist"))
            continue
        target = policy_target(path)
        if target is None:
            skipped.append(str(path))
        else:
            targets.setdefault(target.resolve(), target)
            _narrow(focus, target.resolve(), path)
    files: list[Path] = []
    session_policies: list[Path] = []
    roles: list[str] = []
    over_1h: list[str] = []
    sso: list[Any] = []
    seen: set[frozenset[Path]] = set()
    for resolved, target in targets.items():
        result = check_policy(target)
        key = frozenset(f.resolve() for f in result.files)
        if result.files and key in seen:
            continue  # the same set by another name (a lone file and its directory)
        seen.add(key)
        only = focus.get(resolved)
        files.extend(f for f in result.files if only is None or f.resolve() in only)
        roles.extend(result.role_names)
        if result.policy is not None:
            over_1h.extend(name for name, _ in too_long(result.policy.roles.values()))
            sso.extend(r for r in result.policy.roles.values() if r.identity_center)
            session_policies.extend(
                r.session_policy_path for r in result.policy.roles.values() if r.session_policy_path
            )
        known = [str(target), *map(str, result.files)]
        found = [_finding(exc, known) for exc in result.errors]
        errors.extend(f for f in found if only is None or _in(f, only))
    return Validation(
        files=tuple(dict.fromkeys(files)),
        session_policies=tuple(dict.fromkeys(session_policies)),
        roles=tuple(roles),
        errors=tuple(errors),
        skipped=tuple(skipped),
        over_1h=tuple(over_1h),
        identity_center=tuple(sso),
    )


def _narrow(focus: dict[Path, set[Path] | None], target: Path, path: Path) -> None:
    """A .toml file named inside a set narrows the report to it; anything else (the set's
    directory, a session policy) asks for the whole set."""
    named = path.resolve()
    if named == target or path.suffix != ".toml" or focus.get(target, set()) is None:
        focus[target] = None
    else:
        focus.setdefault(target, set()).add(named)  # type: ignore[union-attr]  # not None: above


def _in(finding: Finding, files: set[Path]) -> bool:
    return finding.file is not None and Path(finding.file).resolve() in files


def _finding(exc: PolicyError, known_files: list[str]) -> Finding:
    """Split "FILE[:LINE]: message" using the file names we know (paths may contain ':')."""
    text = str(exc)
    for name in sorted(known_files, key=len, reverse=True):
        if text.startswith(name + ":"):
            rest = text[len(name) + 1 :]
            m = re.match(r"(\d+):", rest)
            line = int(m.group(1)) if m else None
            return Finding(name, line, (rest[m.end() :] if m else rest).strip())
    return Finding(None, None, text)


# --- explain ----------------------------------------------------------------------------------


def explain(
    policy: Policy,
    role_name: str,
    as_person: str | None = None,
    on_call: OnCallApprovers | None = None,
) -> dict[str, Any]:
    """Everything the policy says about one role, as a JSON-ready document.

    ``on_call``: who is on call now for the role's ``oncall:``/``schedule:`` approvers (None:
    not asked, e.g. a policy file explained offline). An unknown role is a UsageError with a
    "did you mean" (Policy.role).
    """
    role = policy.role(role_name)
    doc: dict[str, Any] = {
        "role": role.name,
        "arn": role.arn,
        "kind": role.kind,
        "account": role.account,
        "permission_set": role.permission_set,
        "description": role.description,
        "source": str(role.source),
        "who_may_request": {"who": WHO_MAY_REQUEST, "gate": REAL_GATE},
        "fast_track": _fast_track(role),
        "incident_fast_track": (
            {
                "services": list(role.incident.services),
                "end_with_incident": role.incident.end_with_incident,
            }
            if role.incident
            else None
        ),
        "approval": _approval(policy, role, on_call),
        "break_glass": _break_glass(role),
        "limits": {
            "max_duration": format_duration(role.max_duration),
            "max_duration_seconds": int(role.max_duration.total_seconds()),
            "default_duration": format_duration(min(DEFAULT_DURATION, role.max_duration)),
            "max_total": format_duration(role.max_total),  # with extensions (`jitctl extend`)
            "max_total_seconds": int(role.max_total.total_seconds()),
            "sts_min_duration": format_duration(MIN_DURATION),
            "sts_min_duration_seconds": int(MIN_DURATION.total_seconds()),
            "note": "a longer --duration is refused"
            + (
                "; on the fast track credentials end with the on-call shift, but never last "
                "less than the STS minimum"
                if role.on_call
                else ""
            ),
        },
        "session_policy": _session_policy(role),
    }
    if as_person is not None:
        doc["as"] = _as_person(policy, role, as_person, on_call)
    return doc


def _fast_track(role: Role) -> dict[str, Any] | None:
    rule = role.on_call
    if rule is None:
        return None
    return {
        "escalation_policies": list(rule.escalation_policies),
        "schedules": list(rule.schedules),
        "services": list(rule.services),
        "max_escalation_level": rule.max_escalation_level,
    }


def _approval(policy: Policy, role: Role, on_call: OnCallApprovers | None) -> dict[str, Any] | None:
    rule = role.approval
    if rule is None:
        return None
    expanded = {
        entry: sorted(policy.groups.get(entry[len(GROUP_PREFIX) :], ()))
        for entry in rule.approvers
        if entry.startswith(GROUP_PREFIX)
    }
    return {
        "approvers": list(rule.approvers),
        "groups": expanded,
        "everyone": policy.approvers_display(role, on_call.people if on_call else None),
        # oncall:/schedule: entries -> who is on call there now (None: PagerDuty not asked)
        "on_call": {
            e: (list(on_call.people.get(e, ())) if on_call else None) for e in rule.on_call_entries
        },
        "on_call_problem": on_call.problem if on_call else None,
        "min_approvals": rule.min_approvals,
        "request_ttl": format_duration(rule.request_ttl),
        "request_ttl_seconds": int(rule.request_ttl.total_seconds()),
        "page_service": rule.page_service,
        "approve_from": list(rule.approve_from),  # where decisions may come from
        "slack_channel": rule.slack_channel,
    }


def _break_glass(role: Role) -> dict[str, Any] | None:
    if role.break_glass is None:
        return None
    cap = role.break_glass.max_duration
    return {
        "max_duration": format_duration(cap),
        "max_duration_seconds": int(cap.total_seconds()),
        "note": "`request --break-glass` issues at once, notifies every approver, and stays "
        "unreviewed until an approver other than the requester runs `jitctl review ID`",
    }


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _session_policy(role: Role) -> dict[str, Any]:
    if role.session_policy is None:
        return {"path": None, "summary": UNREDUCED, "statements": [], "denies": []}
    doc = json.loads(role.session_policy)
    raw = doc.get("Statement", [])
    statements: list[dict[str, Any]] = []
    for stmt in raw if isinstance(raw, list) else [raw]:
        if not isinstance(stmt, dict):
            continue
        statements.append(
            {
                "sid": stmt.get("Sid"),
                "effect": str(stmt.get("Effect", "")),
                "actions": _as_list(stmt.get("Action")),
                "not_actions": _as_list(stmt.get("NotAction")),
                "resources": _as_list(stmt.get("Resource")),
                "not_resources": _as_list(stmt.get("NotResource")),
                "conditional": bool(stmt.get("Condition")),
            }
        )
    denies = [a for s in statements if s["effect"] == "Deny" for a in s["actions"]]
    return {
        "path": str(role.session_policy_path),
        "summary": "the role's own permissions, narrowed to what this session policy allows",
        "statements": statements,
        "denies": list(dict.fromkeys(denies)),
    }


def _as_person(
    policy: Policy, role: Role, who: str, on_call: OnCallApprovers | None
) -> dict[str, Any]:
    """Whether ``who`` (an email or a principal ARN) approves ``role``, and what that means."""
    who = who.strip()
    if is_arn(who):
        arn, person = who, person_for(who, policy.identity) or ""
    else:
        arn, person = "", who.lower()
    people = on_call.people if on_call else None
    result: dict[str, Any] = {
        "person": person or None,
        "arn": arn or None,
        "recognised": bool(person) and EMAIL.fullmatch(person) is not None,
        "is_approver": policy.approver_matches(role, person, arn, people),
        "note": OWN_REQUEST,
    }
    if role.approval is not None:
        # the people who could approve this person's own request
        others = {
            (person_for(m, policy.identity) or m) if is_arn(m) else m
            for m in policy.approvers_display(role, people)
            if m != arn
        } - {person, ""}
        result["other_approvers"] = len(others)
        result["can_be_approved"] = len(others) >= role.approval.min_approvals
    return result
