"""What a role's session policy lets a session do, as grants that can be compared.

A statement becomes one grant per (action, resource) pair it names, or a grant of "every
action (resource) except these" for ``NotAction`` (``NotResource``), with its condition. No
session policy means the role's own permissions unreduced: one grant of ``*`` on ``*``. A grant
is covered by another when every request it allows, the other allows too (jitctl.policy.patterns
decides that for the wildcards), under no condition or the very same one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jitctl.policy.patterns import covers, overlaps

UNREDUCED = "(no session policy: the role's own permissions)"


@dataclass(frozen=True)
class Part:
    """The actions or the resources of a grant: one pattern, or everything except some."""

    patterns: tuple[str, ...]
    negated: bool = False
    fold: bool = False  # actions compare without case; resources (ARNs) with it

    def covers(self, narrow: Part) -> bool:
        if not self.negated:
            wide = self.patterns[0]
            target = ("*",) if narrow.negated else narrow.patterns
            return all(covers(wide, p, self.fold) for p in target)
        if not narrow.negated:  # everything except M covers q when q can be none of M
            return not any(overlaps(m, narrow.patterns[0], self.fold) for m in self.patterns)
        # everything except N is within everything except M when N excludes all M excludes
        return all(any(covers(n, m, self.fold) for n in narrow.patterns) for m in self.patterns)

    def __str__(self) -> str:
        shown = ", ".join(self.patterns)
        return f"everything except {shown}" if self.negated else shown


@dataclass(frozen=True)
class Grant:
    action: Part
    resource: Part
    condition: str | None = None  # the statement's Condition as canonical JSON

    def covers(self, narrow: Grant) -> bool:
        if self.condition is not None and self.condition != narrow.condition:
            return False  # a condition we cannot compare: only the same one is as narrow
        return self.action.covers(narrow.action) and self.resource.covers(narrow.resource)

    def __str__(self) -> str:
        text = f"{self.action} on {self.resource}"
        return text + (f" if {self.condition}" if self.condition else "")


def grants(session_policy: str | None, effect: str) -> tuple[Grant, ...]:
    """The ``effect`` ("Allow" or "Deny") grants of a session policy's (minified) JSON."""
    if session_policy is None:
        everything = Grant(Part(("*",), fold=True), Part(("*",)))
        return (everything,) if effect == "Allow" else ()
    raw = json.loads(session_policy).get("Statement", [])
    found: list[Grant] = []
    for stmt in raw if isinstance(raw, list) else [raw]:
        if isinstance(stmt, dict) and str(stmt.get("Effect", "")) == effect:
            found += _statement_grants(stmt)
    return tuple(dict.fromkeys(found))


def _statement_grants(stmt: dict[str, Any]) -> list[Grant]:
    condition = stmt.get("Condition")
    cond = json.dumps(condition, sort_keys=True, separators=(",", ":")) if condition else None
    actions = _parts(stmt, "Action", fold=True)
    resources = _parts(stmt, "Resource", fold=False)
    return [Grant(a, r, cond) for a in actions for r in resources]


def _parts(stmt: dict[str, Any], key: str, fold: bool) -> list[Part]:
    """``Action: [a, b]`` is two parts, ``NotAction: [a, b]`` one; neither key: none (IAM
    refuses such a statement, so it allows nothing)."""
    if f"Not{key}" in stmt:
        return [Part(tuple(sorted(_strings(stmt[f"Not{key}"]))), negated=True, fold=fold)]
    return [Part((p,), fold=fold) for p in _strings(stmt.get(key, []))]


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items if v is not None]


def uncovered(narrow: Iterable[Grant], wide: Iterable[Grant]) -> tuple[Grant, ...]:
    """The grants of ``narrow`` that no grant of ``wide`` covers."""
    wide = tuple(wide)
    return tuple(g for g in narrow if not any(w.covers(g) for w in wide))


def describe(found: Iterable[Grant], effect: str, session_policy: str | None) -> list[str]:
    """The grants as lines a reviewer reads; the unreduced role says so."""
    if session_policy is None and effect == "Allow":
        return [UNREDUCED]
    return [str(g) for g in found]
