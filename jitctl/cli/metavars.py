"""Plain metavars in usage lines and help: `jitctl request [OPTIONS] ROLE`, `--reason TEXT`,
`--duration DURATION`. The typer here renders `{role}` and `<str>`, which read as a set and a
Python type rather than as the value to give."""

from __future__ import annotations

from typing import Any

# Options whose value is a duration ("30m", "1h30m"), by parameter name.
DURATIONS = frozenset({"duration", "timeout", "by"})
_TYPES = {"str": "TEXT", "text": "TEXT", "int": "N", "integer": "N", "float": "NUMBER"}


def argument_metavar(self: Any, ctx: Any, *, usage: bool = False) -> str:
    var = self.metavar or (self.name or "").upper()
    var += "..." if self.nargs != 1 else ""
    return f"[{var}]" if usage and not self.required else var


def option_metavar(self: Any, ctx: Any) -> str:
    if self.metavar is not None:
        return str(self.metavar)
    if self.name in DURATIONS:
        return "DURATION"
    shown = self.type.get_metavar(param=self, ctx=ctx)  # a choice's [a|b]
    name = str(self.type.name).strip("<>")
    return shown or ("N" if "int" in name else _TYPES.get(name, name.upper()))


def install() -> None:
    """Use these for every command's arguments and options (typer's classes, once)."""
    from typer import core

    # method-assign: typer's own methods, replaced on purpose (once, for every command)
    core.TyperArgument.make_metavar = argument_metavar  # type: ignore[method-assign]
    core.TyperOption.make_metavar = option_metavar  # type: ignore[method-assign]
