"""Reading TOML safely, and strict checking of its tables: unknown keys are errors, with the
closest valid key suggested."""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
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


# -- where an error points: file, line, the table -----------------------------------------
def _key_pattern(part: str) -> str:
    quoted = [r'"' + re.escape(json.dumps(part)[1:-1]) + r'"', r"'" + re.escape(part) + r"'"]
    if re.fullmatch(r"[A-Za-z0-9_-]+", part):
        quoted.append(re.escape(part))
    return "(?:" + "|".join(quoted) + ")"


def header_line(text: str, *parts: str) -> int | None:
    """The 1-based line of the table header ``[a.b.c]`` in ``text``, or None (inline tables...)."""
    dotted = r"\s*\.\s*".join(_key_pattern(p) for p in parts)
    m = re.search(r"^[ \t]*\[[ \t]*" + dotted + r"[ \t]*\]", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None


def location(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)


def key_line(text: str, table: tuple[str, ...], key: str) -> int | None:
    """The 1-based line where ``key`` of the table ``[table]`` is written (``()``: the top
    level): its own sub-table header ``[table.key...]``, else ``key = ...`` in the table's
    body. None when it is written some other way (inline tables, dotted keys)."""
    parts = [*table, key]
    dotted = r"\s*\.\s*".join(_key_pattern(p) for p in parts)
    sub = re.search(r"^[ \t]*\[\[?[ \t]*" + dotted + r"[ \t]*[.\]]", text, re.MULTILINE)
    if sub:
        return text.count("\n", 0, sub.start()) + 1
    if table:
        head = header_line(text, *table)
        if head is None:
            return None
        start = _line_start(text, head + 1)
    else:
        start = 0
    nxt = _HEADER.search(text, start)
    body = text[start : nxt.start() if nxt else len(text)]
    m = re.search(r"^[ \t]*" + _key_pattern(key) + r"[ \t]*=", body, re.MULTILINE)
    return text.count("\n", 0, start + m.start()) + 1 if m else None


def _line_start(text: str, line: int) -> int:
    """The offset where 1-based ``line`` begins (the end of ``text`` past the last line)."""
    offset = 0
    for _ in range(line - 1):
        offset = text.find("\n", offset) + 1
        if offset == 0:
            return len(text)
    return offset


class Where(str):
    """Where an error points: "file:line: label", the line of the table ``[table]``; ``at(key)``
    is the same place at the line of one key of that table, so a typo on line 11 is reported
    at line 11 and not at the table's header. A plain ``str`` where works everywhere too."""

    file: Path
    text: str
    table: tuple[str, ...]
    label: str
    line: int | None

    def __new__(
        cls, file: Path, text: str, table: tuple[str, ...], label: str = "", line: int | None = None
    ) -> Where:
        line = header_line(text, *table) or line if table else line
        self = super().__new__(cls, location(file, line) + (f": {label}" if label else ""))
        self.file, self.text, self.table, self.label, self.line = file, text, table, label, line
        return self

    def within(self, key: str) -> Where:
        """The sub-table ``[table.key]`` (at this table's line when it has no header)."""
        label = f"{self.label}: {key}" if self.label else key
        return Where(self.file, self.text, (*self.table, key), label, line=self.line)

    def at(self, key: str) -> str:
        whole = key.split("[")[0]  # "approvers[2]" -> "approvers"
        line = key_line(self.text, self.table, whole)
        if line is None and "." in whole:  # "groups.sre" in [groups] -> "sre"
            line = key_line(self.text, self.table, whole.rsplit(".", 1)[-1])
        return location(self.file, line or self.line) + (f": {self.label}" if self.label else "")


def at(where: str, key: str) -> str:
    """``where``, pointing at ``key``'s own line when it knows the file's text."""
    return where.at(key) if isinstance(where, Where) else where
