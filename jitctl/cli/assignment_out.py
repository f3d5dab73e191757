"""What `request`/`wait` say for an identity_center grant: what is assigned, until when, and
how to use it (nothing is written to the credentials file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl.cli.output import local_time, relative, safe

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console

    from jitctl.models import Issued


def render_assignment(out: Console, issued: Issued, now: datetime) -> None:
    req, rec = issued.request, issued.request.assignment or {}
    ends = req.credentials_expire_at or now
    out.print(
        f"[green]✓[/] {safe(req.role)}: permission set {safe(str(rec.get('permission_set')))} "
        f"assigned in account {safe(str(rec.get('account')))} ({safe(str(rec.get('state')))}), "
        f"ends {local_time(ends, now)} ({relative(ends, now)}); request {safe(req.request_id)}"
    )
    for note in issued.notes:
        out.print(f"  [yellow]note:[/] {safe(note)}")


def no_credentials(issued: Issued, fmt: str) -> None:
    """--format env/credential-process (or exec, console) asked for keys this kind has not."""
    from jitctl.errors import UsageError

    if fmt == "profile":
        return
    req = issued.request
    raise UsageError(
        f"role {req.role} is an IAM Identity Center role: it has no credentials to give as "
        f"{fmt}; its assignment is made (request {req.request_id})",
        "sign in with `aws sso login`, or through the AWS access portal for the console",
    )
