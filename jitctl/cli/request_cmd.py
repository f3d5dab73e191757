"""`jitctl request` and `jitctl wait`: the fast path, or a pending request and the wait for a peer."""

from __future__ import annotations

import sys
from datetime import timedelta

import typer

from jitctl.cli.output import emit_json, local_time, relative, safe, stderr_console


def parse_duration_option(value: str | None, flag: str) -> timedelta | None:
    if value is None:
        return None
    from jitctl.errors import UsageError
    from jitctl.timeutil import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def interactive() -> bool:
    import os

    return sys.stderr.isatty() and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def render_grant(env, grant, json_out: bool) -> None:
    from jitctl.models import public_dict

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
    elif grant.request.approvers:
        out.print(f"  approved by {safe(', '.join(grant.request.approvers))}")
    for note in grant.notes:
        out.print(f"  [yellow]note:[/] {safe(note)}")
    out.print(
        f"  request {safe(grant.request.request_id)}; try: "
        f"AWS_PROFILE={safe(grant.profile)} aws sts get-caller-identity"
    )


def wait_and_issue(env, req, *, timeout, profile, json_out: bool, cancel_on_interrupt: bool):
    """Wait for a decision with a live status line on a terminal, then issue as the fast path does."""
    from jitctl.decisions import approvers_for
    from jitctl.flow import issue
    from jitctl.waiting import wait_for_decision

    approvers = ", ".join(approvers_for(env, req)) or "nobody (check the policy)"
    if interactive():
        out = stderr_console()
        status = out.status("", spinner="dots")
        status.start()

        def on_poll(current, elapsed: float) -> None:
            from jitctl.timeutil import format_duration

            got = (
                f" ({len(current.approvers)}/{current.min_approvals} approvals)"
                if current.min_approvals > 1
                else ""
            )
            status.update(
                f"waiting {format_duration(timedelta(seconds=int(elapsed)))} for approval{got} of "
                f"{safe(req.request_id)} from {safe(approvers)}; send them: "
                f"[bold]jitctl approve {safe(req.request_id)}[/]  (Ctrl-C cancels)"
            )
    else:
        status = None
        on_poll = None
    try:
        approved = wait_for_decision(
            env,
            req.request_id,
            timeout=timeout,
            cancel_on_interrupt=cancel_on_interrupt,
            on_poll=on_poll,
        )
    finally:
        if status is not None:
            status.stop()
    grant = issue(env, approved, evidence=None, profile=profile, write_profile=True)
    render_grant(env, grant, json_out)


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
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait for a peer's decision (default), or record the request and exit.",
    ),
    timeout: str = typer.Option(
        None,
        "--timeout",
        help='Stop waiting after this long, e.g. "10m" (exit 4; resume with `jitctl wait ID`).',
    ),
    profile: str = typer.Option(
        None, "--profile", help="Profile name in the shared credentials file (default jit-ROLE)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Request access to ROLE: on call, credentials at once; otherwise wait for a peer's approval."""
    from jitctl.context import Environment
    from jitctl.flow import issue, submit
    from jitctl.models import public_dict

    env = Environment()
    wait_for = parse_duration_option(timeout, "--timeout")
    submitted = submit(
        env, role_name=role, reason=reason, duration=parse_duration_option(duration, "--duration")
    )
    req = submitted.request
    out = stderr_console()
    for warning in submitted.warnings:
        out.print(f"[yellow]warning:[/] {safe(warning)}")
    if submitted.fast_tracked:
        grant = issue(
            env, req, evidence=submitted.on_call.evidence, profile=profile, write_profile=True
        )
        render_grant(env, grant, json_out)
        return
    out.print(
        f"approval needed for {safe(req.role)}: {safe(submitted.on_call.reason)}\n"
        f"  request [bold]{safe(req.request_id)}[/] is pending until {local_time(req.expires_at, env.clock.now())}; "
        f"approvers ({safe(', '.join(submitted.approvers))}) run: [bold]jitctl approve {safe(req.request_id)}[/]"
    )
    if not wait:
        if json_out:
            emit_json(public_dict(req))
        else:
            sys.stdout.write(req.request_id + "\n")
        return
    wait_and_issue(
        env, req, timeout=wait_for, profile=profile, json_out=json_out, cancel_on_interrupt=True
    )


def wait(
    request_id: str = typer.Argument(..., help="The request to wait for (from `jitctl request`)."),
    timeout: str = typer.Option(
        None, "--timeout", help='Stop waiting after this long, e.g. "10m" (exit 4).'
    ),
    profile: str = typer.Option(
        None, "--profile", help="Profile name in the shared credentials file (default jit-ROLE)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Resume waiting for a decision on your request, and get credentials once it is approved."""
    from jitctl.context import Environment
    from jitctl.decisions import get_request
    from jitctl.errors import Denied

    env = Environment()
    req = get_request(env, request_id)
    if req.requester != env.caller.person:
        raise Denied(f"request {request_id} belongs to {req.requester}; only they can wait for it")
    wait_and_issue(
        env,
        req,
        timeout=parse_duration_option(timeout, "--timeout"),
        profile=profile,
        json_out=json_out,
        cancel_on_interrupt=False,
    )


def register(app: typer.Typer) -> None:
    app.command("request")(request)
    app.command("wait")(wait)
