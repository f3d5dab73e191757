"""`jitctl grants`: your live grants, and when each ends."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from jitctl.cli.output import (
    emit_json,
    local_time,
    print_table,
    relative,
    safe,
    stderr_console,
)

if TYPE_CHECKING:
    from jitctl.models import AccessRequest


def grants(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Your live grants (issued, not expired, not revoked), with when each ends."""
    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    env = current_env()
    live = env.service.grants()
    now = env.clock.now()
    if json_out:
        emit_json([_grant_doc(public_dict(r), r, now) for r in live])
        return
    if not live:
        stderr_console().print("no live grants; `jitctl request ROLE --reason ...` asks for one")
        return
    _table(live, now)


def _grant_doc(doc: dict[str, Any], req: AccessRequest, now: datetime) -> dict[str, Any]:
    left = int((_ends(req) - now).total_seconds())  # extensions included: doc's ends_at
    return doc | {"ends_in_seconds": max(left, 0)}


def _ends(grant: AccessRequest) -> datetime:
    """A live grant's end, extensions included (issued grants record one; None would not be
    live)."""
    from jitctl.models import grant_end

    ends = grant_end(grant)
    assert ends is not None
    return ends


def _table(live: list[AccessRequest], now: datetime) -> None:
    rows = [
        [
            safe(r.role),
            safe(r.request_id),
            safe(r.approval or "-"),
            f"{local_time(_ends(r), now)} ({relative(_ends(r), now)})",
            safe(r.reason),
        ]
        for r in live
    ]
    print_table(
        ["ROLE", "REQUEST", "APPROVAL", "ENDS", "REASON"],
        rows,
        whole=("ROLE", "REQUEST"),
        drop=("APPROVAL", "REASON"),
    )


def register(app: typer.Typer) -> None:
    app.command("grants")(grants)
