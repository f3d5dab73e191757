"""Strict checking of TOML tables: unknown keys are errors, with the closest valid key suggested."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def closest(name: str, options: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant, or None."""
    matches = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: str, allowed: Iterable[str], where: str) -> str:
    allowed = sorted(allowed)
    guess = closest(key, allowed)
    suggestion = f"did you mean {guess!r}?" if guess else f"valid keys: {', '.join(allowed)}"
    return f"{where}: unknown key {key!r}; {suggestion}"


def first_unknown_key(table: Mapping[str, Any], allowed: Iterable[str]) -> str | None:
    allowed = set(allowed)
    for key in table:
        if key not in allowed:
            return key
    return None
