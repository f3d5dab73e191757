"""`jitctl grants`: your live grants, and when each ends."""

from __future__ import annotations

import typer

from jitctl.cli.output import (
    emit_json,
    local_time,
    print_table,
    relative,
    safe,
    stderr_console,
)


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


def _grant_doc(doc: dict, req, now) -> dict:
    from jitctl.models import grant_end

    left = int((grant_end(req) - now).total_seconds())  # extensions included: doc's ends_at
    return doc | {"ends_in_seconds": max(left, 0)}


def _table(live, now) -> None:
    from jitctl.models import grant_end

    rows = [
        [
            safe(r.role),
            safe(r.request_id),
            safe(r.approval or "-"),
            f"{local_time(grant_end(r), now)} ({relative(grant_end(r), now)})",
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
