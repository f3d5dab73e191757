"""Reading TOML safely, and strict checking of its tables: unknown keys are errors, with the
closest valid key suggested."""

from __future__ import annotations

import difflib
import re
import tomllib
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


class TomlError(ValueError):
    """A file that is not TOML jitctl can read; ``line`` when tomllib knows it."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def parse_toml(data: bytes) -> tuple[dict[str, Any], str]:
    """The document and its text. Every way a file can be unreadable is a TomlError: bad UTF-8,
    bad TOML, and nesting deep enough to exhaust tomllib's recursion."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TomlError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise TomlError(str(exc), int(m.group(1)) if m else None) from None
    except RecursionError:
        raise TomlError("nested too deeply to read") from None
