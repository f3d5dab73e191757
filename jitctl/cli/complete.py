"""typer `autocompletion=` callbacks: the shells' <TAB> for role names and request ids.

They run inside `jitctl` when a completion script (completions/, scripts/gen-completions)
asks for candidates, with the Environment `run` built; jitctl.completion does the work.
Nothing may reach stderr or stdout but the candidates, so warnings are silenced here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from jitctl.context import Environment

Completer = Callable[[typer.Context, str], list[tuple[str, str]]]


def _env(ctx: typer.Context) -> Environment:
    """The Environment `run` built, with its warnings silenced (they would land in the
    shell's prompt line)."""
    from jitctl.trusted_time import TrustedClock

    env: Environment = ctx.find_root().obj
    env.on_warning = None
    if isinstance(env.clock, TrustedClock):
        env.clock.on_skew = None
    return env


def roles(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    from jitctl.completion import role_names

    return role_names(_env(ctx), incomplete)


def requests(kind: str) -> Completer:
    """Request ids a command can act on (jitctl.completion.REQUEST_KINDS)."""

    def complete(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
        from jitctl.completion import request_ids

        return request_ids(_env(ctx), incomplete, kind)

    return complete
