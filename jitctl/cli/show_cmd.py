"""`jitctl list` and `jitctl status`: seeing requests."""

from __future__ import annotations

import typer

from jitctl.cli import complete
from jitctl.cli.output import (
    JSON_OPTION,
    emit_json,
    local_time,
    relative,
    safe,
    stderr_console,
    stdout,
)


def request_table(reqs, now):
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "ROLE", "REQUESTER", "STATUS", "AGE", "REASON"):
        table.add_column(col, overflow="fold")
    for r in reqs:
        table.add_row(
            safe(r.request_id),
            safe(r.role),
            safe(r.requester),
            safe(r.status),
            relative(r.created_at, now).replace(" ago", ""),
            safe(r.reason),
        )
    return table


def list_cmd(
    pending: bool = typer.Option(False, "--pending", help="Only pending requests."),
    mine: bool = typer.Option(False, "--mine", help="Only your own requests."),
    role: str = typer.Option(None, "--role", help="Only requests for this role."),
    limit: int = typer.Option(
        100, "--limit", min=1, max=1000, help="At most this many, newest first."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """List requests, newest first."""
    from rich.console import Console

    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    env = current_env()
    reqs = env.service.list(pending_only=pending, mine=mine, role=role, limit=limit)
    if json_out:
        emit_json([public_dict(r) for r in reqs])
        return
    if not reqs:
        stderr_console().print("no requests" + (" pending" if pending else ""))
        return
    Console(highlight=False, soft_wrap=not stdout().isatty()).print(
        request_table(reqs, env.clock.now())
    )


def status(
    request_id: str = typer.Argument(
        ..., help="The request id.", autocompletion=complete.requests("any")
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show one request."""
    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    env = current_env()
    req = env.service.get(request_id)
    if json_out:
        emit_json(public_dict(req))
        return
    describe(req, env.clock.now())


def describe(req, now) -> None:
    """Key facts of a request on stderr (also the approver's confirmation screen)."""
    from datetime import timedelta

    from jitctl.timeutil import format_duration

    out = stderr_console()
    rows = [
        ("request", req.request_id),
        ("role", req.role),
        ("requester", f"{req.requester} ({req.requester_arn})"),
        ("reason", req.reason),
        ("duration", format_duration(timedelta(seconds=req.duration_seconds))),
        ("status", req.status),
        ("created", f"{local_time(req.created_at, now)} ({relative(req.created_at, now)})"),
    ]
    if req.status == "pending":
        rows.append(
            ("expires", f"{local_time(req.expires_at, now)} ({relative(req.expires_at, now)})")
        )
        rows.append(("approvals", f"{len(req.approvers)}/{req.min_approvals}"))
    if req.approval:
        rows.append(("approval", req.approval))
    if req.approvers:
        rows.append(("approvers", ", ".join(req.approvers)))
    if req.decided_by and req.status in ("denied", "cancelled"):
        why = f": {req.decision_reason}" if req.decision_reason else ""
        rows.append((f"{req.status} by", req.decided_by + why))
    if req.revoked_by:
        why = f": {req.revoked_reason}" if req.revoked_reason else ""
        rows.append(("revoked by", req.revoked_by + why))
    if req.fast_path_reason:
        rows.append(("fast path", req.fast_path_reason))
    if req.credentials_expire_at:
        left = req.credentials_expire_at - now
        flag = (
            "  [yellow](under 10 minutes left)[/]"
            if timedelta(0) < left < timedelta(minutes=10)
            else ""
        )
        rows.append(
            (
                "credentials",
                f"expire {local_time(req.credentials_expire_at, now)} ({relative(req.credentials_expire_at, now)}){flag}",
            )
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.print(
            # only our own credentials line carries markup; every other value is data
            f"  [bold]{key.ljust(width)}[/]  {value if key == 'credentials' else safe(value)}"
        )


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("status")(status)
