"""`jitctl policy diff`: who gains or loses which access between two versions of the policy.

Both versions are loaded by the one loader (jitctl.policy.load; a git revision through
jitctl.policy.revisions) and compared by meaning, never by text: groups are expanded to
people, on-call scopes named as entries, durations and levels compared as quantities,
session policies as the requests they allow (jitctl.policy.scope). Each key that changes access
is one row of ASPECTS: what it is called, how to read it off a role, and which way widens. A
key another part of jitctl adds to Role is one more row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from jitctl.policy.load import Policy
from jitctl.policy.patterns import covers
from jitctl.policy.roles import Role
from jitctl.policy.scope import Grant, describe, grants, uncovered
from jitctl.timeutil import format_duration

SKIP = object()  # the key does not apply to this version of the role (its track is absent)


@dataclass(frozen=True)
class Verdict:
    widens: bool
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    role: str | None  # None: a policy-wide key ([identities])
    what: str
    before: Any
    after: Any
    widens: bool
    people: tuple[str, ...] = ()
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    via: tuple[str, ...] = ()  # the groups whose members make an approvers change

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "what": self.what,
            "before": self.before,
            "after": self.after,
            "widens": self.widens,
            "people": list(self.people),
            "gained": list(self.gained),
            "lost": list(self.lost),
            "via": list(self.via),
        }


@dataclass(frozen=True)
class PolicyDiff:
    changes: tuple[Change, ...]
    base: str = ""  # what was compared, as the user named it
    head: str = ""

    @property
    def widens(self) -> bool:
        return any(c.widens for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "widens": self.widens,
            "base": self.base,
            "head": self.head,
            "changes": [c.to_json() for c in self.changes],
        }


# --- which way widens -----------------------------------------------------------------------


def grows(before: frozenset[str], after: frozenset[str]) -> Verdict | None:
    """A set of who or what: anything added widens."""
    before, after = frozenset(before or ()), frozenset(after or ())  # a key left at None
    gained, lost = tuple(sorted(after - before)), tuple(sorted(before - after))
    return Verdict(bool(gained), gained, lost) if gained or lost else None


def higher(before: Any, after: Any) -> Verdict | None:
    """A limit: more (a longer duration, a deeper level) widens; None means no limit."""
    if before == after:
        return None
    return Verdict(before is not None and (after is None or after > before))


def lower(before: Any, after: Any) -> Verdict | None:
    """A requirement: less (fewer approvals, a flag turned off) widens; a requirement that
    appears or goes (None) cannot be ranked, so it counts as widening."""
    if before == after:
        return None
    return Verdict(True if None in (before, after) else after < before)


def switched(before: Any, after: Any) -> Verdict | None:
    """What the role is (its ARN, account): any change may be access to something else."""
    return None if before == after else Verdict(True)


def noted(before: Any, after: Any) -> Verdict | None:
    """Worth a reviewer's eye, but not access (how long a pending request waits)."""
    return None if before == after else Verdict(False)


def patterns_grow(before: frozenset[str], after: frozenset[str]) -> Verdict | None:
    """Globs (session_name_roles): one that no earlier glob covers widens."""
    if before == after:
        return None
    gained = tuple(sorted(a for a in after if not any(covers(b, a, classes=True) for b in before)))
    lost = tuple(sorted(b for b in before if not any(covers(a, b, classes=True) for a in after)))
    return Verdict(bool(gained), gained, lost) if gained or lost else None


def allows_more(before: tuple[Grant, ...], after: tuple[Grant, ...]) -> Verdict | None:
    """Session-policy Allow grants: one the earlier ones do not cover widens."""
    gained, lost = uncovered(after, before), uncovered(before, after)
    return Verdict(bool(gained), _strs(gained), _strs(lost)) if gained or lost else None


def denies_less(before: tuple[Grant, ...], after: tuple[Grant, ...]) -> Verdict | None:
    """Session-policy Deny grants: an earlier deny that the new ones do not cover widens."""
    gained, lost = uncovered(after, before), uncovered(before, after)
    return Verdict(bool(lost), _strs(gained), _strs(lost)) if gained or lost else None


def _strs(items: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(i) for i in items)


# --- reading a role -------------------------------------------------------------------------


def approvers(policy: Policy, role: Role) -> frozenset[str]:
    """Everyone who may approve: groups expanded to members, oncall:/schedule: as entries."""
    if role.approval is None:
        return frozenset()
    return frozenset(policy.approvers_display(role)) | frozenset(role.approval.on_call_entries)


def on_call_scopes(policy: Policy, role: Role) -> frozenset[str]:
    """The on-call fast track's scopes as entries: oncall:EP, schedule:S, service:SVC."""
    rule = role.on_call
    if rule is None:
        return frozenset()
    return frozenset(
        [f"oncall:{e}" for e in rule.escalation_policies]
        + [f"schedule:{s}" for s in rule.schedules]
        + [f"service:{s}" for s in rule.services]
    )


def incident_scopes(policy: Policy, role: Role) -> frozenset[str]:
    """The incident fast track's services, as incident:SVC (whoever works one there)."""
    return frozenset(f"incident:{s}" for s in (role.incident.services if role.incident else ()))


def attr(path: str, absent: Any = SKIP) -> Callable[[Policy, Role], Any]:
    """The value at ``path`` on the role ("approval.min_approvals"); ``absent`` when a table
    on the way is not there, SKIP when this jitctl's Role has no such key at all."""

    def get(policy: Policy, role: Role) -> Any:
        value: Any = role
        for name in path.split("."):
            if value is None:
                return absent
            if not hasattr(value, name):
                return SKIP
            value = getattr(value, name)
        return frozenset(value) if isinstance(value, list | tuple) else value

    return get


def _session(effect: str) -> Callable[[Policy, Role], Any]:
    return lambda policy, role: grants(role.session_policy, effect)


def _grant_lines(effect: str) -> Callable[[Any, Role], Any]:
    return lambda value, role: describe(value, effect, role.session_policy)


@dataclass(frozen=True)
class Aspect:
    what: str
    get: Callable[[Policy, Role], Any]
    judge: Callable[[Any, Any], Verdict | None]
    people: bool = False  # gained and lost are who (people, on-call entries)
    show: Callable[[Any, Role], Any] = field(default=lambda value, role: _shown(value))


def _shown(value: Any) -> Any:
    """A value as JSON: sets sorted, durations as the policy writes them."""
    if isinstance(value, frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _level(value: Any, role: Role) -> Any:
    return "any" if value is None else value


def _glass(value: Any, role: Role) -> Any:
    return format_duration(value) if value else "not allowed"


# Every key that changes access, in the order a reviewer reads a role.
ASPECTS: tuple[Aspect, ...] = (
    Aspect("arn", attr("arn"), switched),
    Aspect("kind", attr("kind"), switched),
    Aspect("account", attr("account"), switched),
    Aspect("permission_set", attr("permission_set"), switched),
    Aspect("approval.approvers", approvers, grows, people=True),
    Aspect("approval.min_approvals", attr("approval.min_approvals"), lower),
    Aspect("approval.approve_from", attr("approval.approve_from"), grows),
    Aspect("approval.request_ttl", attr("approval.request_ttl"), noted),
    Aspect("on_call", on_call_scopes, grows, people=True),
    Aspect(
        "on_call.max_escalation_level", attr("on_call.max_escalation_level"), higher, show=_level
    ),
    Aspect("incident", incident_scopes, grows, people=True),
    Aspect("incident.end_with_incident", attr("incident.end_with_incident"), lower),
    Aspect(
        "break_glass", attr("break_glass.max_duration", absent=timedelta(0)), higher, show=_glass
    ),
    Aspect("max_duration", attr("max_duration"), higher),
    Aspect("max_total", attr("max_total"), higher),
    Aspect("session_policy.allow", _session("Allow"), allows_more, show=_grant_lines("Allow")),
    Aspect("session_policy.deny", _session("Deny"), denies_less, show=_grant_lines("Deny")),
)


# --- comparing two policies -----------------------------------------------------------------


def diff_policies(before: Policy, after: Policy, base: str = "", head: str = "") -> PolicyDiff:
    """Every change in access from ``before`` to ``after``: policy-wide keys first, then each
    role by name (added, removed, or each aspect that changed)."""
    changes = list(_policy_wide(before, after))
    for name in sorted(set(before.roles) | set(after.roles)):
        old, new = before.roles.get(name), after.roles.get(name)
        if old is None or new is None:
            changes.append(_role_came_or_went(name, before, after))
        else:
            changes.extend(_role_changes(before, old, after, new))
    return PolicyDiff(tuple(changes), base, head)


def _role_came_or_went(name: str, before: Policy, after: Policy) -> Change:
    """A new role widens: everyone who may approve it or is fast-tracked gains it."""
    policy = after if name in after.roles else before
    role = policy.roles[name]
    who = tuple(sorted(_who_gets(policy, role)))
    added = policy is after
    return Change(
        role=name,
        what="role",
        before=None if added else role.arn,
        after=role.arn if added else None,
        widens=added,
        people=who,
        gained=who if added else (),
        lost=() if added else who,
    )


def _who_gets(policy: Policy, role: Role) -> frozenset[str]:
    """Everyone a role is open to: approvers (and their groups) and fast-track scopes."""
    groups = _via(policy, role, approvers(policy, role))
    tracks = on_call_scopes(policy, role) | incident_scopes(policy, role)
    return approvers(policy, role) | frozenset(groups) | tracks


def _role_changes(before: Policy, old: Role, after: Policy, new: Role) -> Iterable[Change]:
    for aspect in ASPECTS:
        b, a = aspect.get(before, old), aspect.get(after, new)
        if b is SKIP or a is SKIP:
            continue
        verdict = aspect.judge(b, a)
        if verdict is None:
            continue
        via = (
            _via(before, old, verdict.lost) + _via(after, new, verdict.gained)
            if aspect.people
            else ()
        )
        who = verdict.gained + verdict.lost + via if aspect.people else ()
        yield Change(
            role=new.name,
            what=aspect.what,
            before=aspect.show(b, old),
            after=aspect.show(a, new),
            widens=verdict.widens,
            people=tuple(sorted(set(who))),  # the people, and the groups they come through
            gained=verdict.gained,
            lost=verdict.lost,
            via=tuple(sorted(set(via))),
        )


def _via(policy: Policy, role: Role, people: Iterable[str]) -> tuple[str, ...]:
    """The role's group:NAME approver entries that hold any of ``people``."""
    wanted = set(people)
    entries = role.approval.approvers if role.approval else ()
    return tuple(
        e
        for e in entries
        if e.startswith("group:") and wanted & set(policy.groups.get(e[len("group:") :], ()))
    )


def _policy_wide(before: Policy, after: Policy) -> Iterable[Change]:
    """[identities]: who a principal is, and whose session names name a person."""
    mapped = grows(_identities(before), _identities(after))
    if mapped is not None:
        who = {entry.rpartition(" = ")[2] for entry in mapped.gained + mapped.lost}
        yield Change(
            None,
            "identities",
            sorted(_identities(before)),
            sorted(_identities(after)),
            mapped.widens,
            tuple(sorted(who)),
            mapped.gained,
            mapped.lost,
        )
    b, a = frozenset(before.session_name_roles), frozenset(after.session_name_roles)
    named = patterns_grow(b, a)
    if named is not None:
        yield Change(
            None,
            "identities.session_name_roles",
            sorted(b),
            sorted(a),
            named.widens,
            named.gained + named.lost,
            named.gained,
            named.lost,
        )


def _identities(policy: Policy) -> frozenset[str]:
    return frozenset(f"{arn} = {email}" for arn, email in policy.identities.items())
