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
    left = int((req.credentials_expire_at - now).total_seconds())
    return doc | {"ends_at": doc["credentials_expire_at"], "ends_in_seconds": max(left, 0)}


def _table(live, now) -> None:
    rows = [
        [
            safe(r.role),
            safe(r.request_id),
            safe(r.approval or "-"),
            f"{local_time(r.credentials_expire_at, now)} ({relative(r.credentials_expire_at, now)})",
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
