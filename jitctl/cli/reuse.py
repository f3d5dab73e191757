"""Reusing your live grant: `exec`, `request` and `console` hand out your cached grant for
the role while it has time left, rather than leaving another live grant behind."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import typer

from jitctl.cli.output import local_time, relative, safe, stderr_console

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.models import Issued

FRESH_OPTION = typer.Option(
    False, "--fresh", help="Request new credentials even while your cached grant is live."
)


def reused_grant(
    env: Environment, role: str, reason: str | None, wanted: timedelta | None
) -> Issued | None:
    """Your cached grant for ROLE, checked live and audited as a use (with this ``reason``),
    while it has ``wanted`` (a --duration) left, as `exec`, `request` and `console` reuse it;
    None: request anew (said why on stderr)."""
    from jitctl.credentials.reuse import reuse_cached

    grant, why_not = reuse_cached(env, role, reason, wanted)
    out = stderr_console()
    if grant is None:
        if why_not:
            out.print(f"[yellow]note:[/] not reusing: {safe(why_not)}; requesting anew")
        return None
    expires = grant.keys().expires
    now = env.clock.now()
    out.print(
        f"[green]✓[/] {safe(role)}: reusing grant {safe(grant.request.request_id)}, expires "
        f"{local_time(expires, now)} ({relative(expires, now)}); --fresh requests anew"
    )
    return grant


def reused_unless_fresh(
    env: Environment, role: str, reason: str | None, wanted: timedelta | None, fresh: bool
) -> Issued | None:
    """`exec`'s and `console`'s first step: your live grant (``reused_grant``) unless --fresh
    asks anew; None: obtain one."""
    return None if fresh else reused_grant(env, role, reason, wanted)
