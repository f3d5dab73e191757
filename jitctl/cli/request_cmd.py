"""`jitctl request`: the fast path (on call) and, later, the wait for a peer."""

from __future__ import annotations

from datetime import timedelta

import typer

from jitctl.cli.output import emit_json, local_time, relative, safe, stderr_console


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    from jitctl.errors import UsageError
    from jitctl.timeutil import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from exc


def request(
    role: str = typer.Argument(..., help="Role name from the policy, e.g. prod-readonly."),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why you need access (an incident id helps)."
    ),
    duration: str = typer.Option(
        None,
        "--duration",
        "-d",
        help='How long, e.g. "30m", "1h30m"; at most the role\'s max_duration.',
    ),
    profile: str = typer.Option(
        None, "--profile", help="Profile name in the shared credentials file (default jit-ROLE)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Request access to ROLE: on call, credentials at once; otherwise approval is required."""
    from jitctl.context import Environment
    from jitctl.flow import request_access
    from jitctl.models import public_dict

    env = Environment()
    grant = request_access(
        env, role_name=role, reason=reason, duration=_duration(duration), profile=profile
    )
    if json_out:
        doc = public_dict(grant.request)
        doc["profile"] = grant.profile
        doc["on_call"] = grant.evidence.as_dict() if grant.evidence else None
        doc["notes"] = grant.notes
        emit_json(doc)
        return
    now = env.clock.now()
    out = stderr_console()
    expires = grant.credentials.expiration
    out.print(
        f"[green]✓[/] {safe(grant.request.role)}: credentials in profile [bold]{safe(grant.profile)}[/], "
        f"expire {local_time(expires, now)} ({relative(expires, now)})"
    )
    if grant.evidence is not None:
        ev = grant.evidence
        until = f"until {local_time(ev.end, now)}" if ev.end else "permanently"
        out.print(f"  fast-tracked: on call, {safe(ev.matched_id)} level {ev.level} {until}")
    for note in grant.notes:
        out.print(f"  [yellow]note:[/] {safe(note)}")
    out.print(
        f"  request {safe(grant.request.request_id)}; use it: AWS_PROFILE={safe(grant.profile)} aws sts get-caller-identity"
    )


def register(app: typer.Typer) -> None:
    app.command("request")(request)
