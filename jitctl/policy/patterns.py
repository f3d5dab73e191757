"""Wildcard patterns compared by what they match, not by how they are written.

IAM's ``*`` (any run of characters) and ``?`` (one character) in session-policy actions and
resources, and fnmatch globs (those plus ``[...]``) in ``[identities] session_name_roles``.
`covers` answers "does every name the narrow pattern matches also match the wide one?" soundly:
it never says yes when the answer is no; the rare no for a pattern that does cover makes
`policy diff` say "widens", the safe side for a review.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache

STAR, ONE = "*", "?"
Token = str  # one literal character, "*", "?", or a whole "[...]" class (``classes``)


def tokens(pattern: str, classes: bool = False) -> tuple[Token, ...]:
    """The pattern's symbols; with ``classes`` a "[...]" is one symbol, as fnmatch reads it."""
    out: list[Token] = []
    i = 0
    while i < len(pattern):
        end = pattern.find("]", i + 2) if classes and pattern[i] == "[" else -1
        out.append(pattern[i : end + 1] if end > 0 else pattern[i])
        i = end + 1 if end > 0 else i + 1
    return tuple(out)


def _one_covers(wide: Token, narrow: Token) -> bool:
    """Whether the one-character symbol ``wide`` matches everything ``narrow`` matches."""
    if wide == ONE:
        return narrow != STAR
    if narrow in (STAR, ONE):
        return False
    if len(wide) > 1:  # a class: covers a literal in it, or the very same class
        return wide == narrow or (len(narrow) == 1 and fnmatchcase(narrow, wide))
    return wide == narrow


def covers(wide: str, narrow: str, fold: bool = False, classes: bool = False) -> bool:
    """Whether every string ``narrow`` matches is matched by ``wide``. ``fold``: compare
    without case (IAM actions); ``classes``: "[...]" is a class (fnmatch), not two letters."""
    if fold:
        wide, narrow = wide.lower(), narrow.lower()
    return _covers(tokens(wide, classes), tokens(narrow, classes))


@lru_cache(maxsize=4096)
def _covers(wide: tuple[Token, ...], narrow: tuple[Token, ...]) -> bool:
    # ok[j]: wide[i:] covers narrow[j:], computed from the end of ``wide`` backwards
    ok = [False] * len(narrow) + [True]
    for token in reversed(wide):
        nxt, ok = ok, [False] * (len(narrow) + 1)
        for j in range(len(narrow), -1, -1):
            if token == STAR:  # matches nothing more, or eats narrow's next symbol (any kind)
                ok[j] = nxt[j] or (j < len(narrow) and ok[j + 1])
            else:
                ok[j] = j < len(narrow) and _one_covers(token, narrow[j]) and nxt[j + 1]
    return ok[0]


def overlaps(first: str, second: str, fold: bool = False) -> bool:
    """Whether some string matches both patterns (IAM's ``*`` and ``?``)."""
    if fold:
        first, second = first.lower(), second.lower()
    return _overlaps(tokens(first), tokens(second))


@lru_cache(maxsize=4096)
def _overlaps(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:  # a search over (position in a, position in b): no recursion limit to hit
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        todo.extend(_overlap_steps(a, b, i, j))
    return False


def _overlap_steps(
    a: tuple[Token, ...], b: tuple[Token, ...], i: int, j: int
) -> list[tuple[int, int]]:
    """The states one symbol on: a star matching nothing or one more character of the other."""
    steps = []
    ai = a[i] if i < len(a) else None
    bj = b[j] if j < len(b) else None
    if ai == STAR:
        steps += [(i + 1, j)] + ([(i, j + 1)] if bj is not None and bj != STAR else [])
    if bj == STAR:
        steps += [(i, j + 1)] + ([(i + 1, j)] if ai is not None and ai != STAR else [])
    if None not in (ai, bj) and STAR not in (ai, bj) and (ai == bj or ONE in (ai, bj)):
        steps.append((i + 1, j + 1))
    return steps
