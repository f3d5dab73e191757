"""`jitctl request`, `wait`, `exec` and `credential-process`: getting and handing out credentials."""

from __future__ import annotations

import sys
from datetime import timedelta

import typer

from jitctl.cli.output import emit_json, interactive, local_time, relative, safe, stderr_console

FORMATS = ("profile", "env", "credential-process")
FORMAT_HELP = "profile: write the shared credentials file (default); env: print export lines for eval; credential-process: print the AWS credential_process JSON."


# Shared by `request` and `wait`: typer options are plain default values, safe to reuse.
PROFILE_OPTION = typer.Option(
    None, "--profile", help="Profile name in the shared credentials file (default jit-ROLE)."
)
FORMAT_OPTION = typer.Option("profile", "--format", "-f", help=FORMAT_HELP)
SHELL_OPTION = typer.Option(
    "sh", "--shell", help="With --format env: sh (bash, zsh), fish or powershell."
)
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout (no secrets).")


def clock_warning(message: str) -> None:
    """Told once by the trusted clock when this machine's clock disagrees with AWS's."""
    stderr_console().print(f"[yellow]warning:[/] {safe(message)}")


def parse_duration_option(value: str | None, flag: str) -> timedelta | None:
    if value is None:
        return None
    from jitctl.errors import UsageError
    from jitctl.timeutil import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def check_format(fmt: str, shell: str, json_out: bool) -> None:
    """Refuse impossible combinations before anything is requested."""
    from jitctl.errors import UsageError
    from jitctl.formats import SHELLS

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if shell not in SHELLS:
        raise UsageError(f"--shell {shell!r} is not one of {', '.join(SHELLS)}")
    if json_out and fmt != "profile":
        raise UsageError(f"--json and --format {fmt} both print to stdout", "choose one")


def deliver(env, grant, *, fmt: str, shell: str, json_out: bool) -> None:
    """Secrets reach stdout only when a format asks for them; the summary goes to stderr."""
    from jitctl.formats import credential_process_json, env_lines

    if fmt == "env":
        sys.stdout.write(env_lines(grant.credentials, shell))
    elif fmt == "credential-process":
        sys.stdout.write(credential_process_json(grant.credentials) + "\n")
    render_grant(env, grant, json_out)


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
    where = f"in profile [bold]{safe(grant.profile)}[/]" if grant.profile else "issued"
    short = timedelta(0) < expires - now < timedelta(minutes=10)
    flag = " [yellow](under 10 minutes)[/]" if short else ""
    out.print(
        f"[green]✓[/] {safe(grant.request.role)}: credentials {where}, "
        f"expire {local_time(expires, now)} ({relative(expires, now)}){flag}"
    )
    if grant.evidence is not None:
        ev = grant.evidence
        until = f"until {local_time(ev.end, now)}" if ev.end else "permanently"
        out.print(f"  fast-tracked: on call, {safe(ev.matched_id)} level {ev.level} {until}")
    elif grant.request.approvers:
        out.print(f"  approved by {safe(', '.join(grant.request.approvers))}")
    for note in grant.notes:
        out.print(f"  [yellow]note:[/] {safe(note)}")
    if grant.profile:
        out.print(
            f"  request {safe(grant.request.request_id)}; try: "
            f"AWS_PROFILE={safe(grant.profile)} aws sts get-caller-identity"
        )


def await_approval(env, req, *, timeout, cancel_on_interrupt: bool):
    """Wait for a decision with a live status line on a terminal; returns the approved request."""
    from jitctl.decisions import approvers_for
    from jitctl.waiting import wait_for_decision

    approvers = ", ".join(approvers_for(env, req)) or "nobody (check the policy)"
    status = on_poll = None
    if interactive():
        status = stderr_console().status("", spinner="dots")
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

    try:
        return wait_for_decision(
            env,
            req.request_id,
            timeout=timeout,
            cancel_on_interrupt=cancel_on_interrupt,
            on_poll=on_poll,
        )
    finally:
        if status is not None:
            status.stop()


def obtain(
    env, *, role, reason, duration, timeout, wait: bool, profile, write_profile: bool, cache: bool
):
    """The request flow shared by `request` and `exec`: a grant, or the pending request (--no-wait)."""
    from jitctl.flow import issue, submit

    submitted = submit(env, role_name=role, reason=reason, duration=duration)
    req = submitted.request
    out = stderr_console()
    for warning in submitted.warnings:
        out.print(f"[yellow]warning:[/] {safe(warning)}")
    if submitted.fast_tracked:
        return issue(
            env,
            req,
            evidence=submitted.on_call.evidence,
            profile=profile,
            write_profile=write_profile,
            cache=cache,
        )
    out.print(
        f"approval needed for {safe(req.role)}: {safe(submitted.on_call.reason)}\n"
        f"  request [bold]{safe(req.request_id)}[/] is pending until {local_time(req.expires_at, env.clock.now())}; "
        f"approvers ({safe(', '.join(submitted.approvers))}) run: [bold]jitctl approve {safe(req.request_id)}[/]"
    )
    if not wait:
        return req
    approved = await_approval(env, req, timeout=timeout, cancel_on_interrupt=True)
    return issue(
        env, approved, evidence=None, profile=profile, write_profile=write_profile, cache=cache
    )


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
    profile: str = PROFILE_OPTION,
    fmt: str = FORMAT_OPTION,
    shell: str = SHELL_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Request access to ROLE: on call, credentials at once; otherwise wait for a peer's approval."""
    from jitctl.context import Environment
    from jitctl.flow import Grant
    from jitctl.models import public_dict

    check_format(fmt, shell, json_out)
    env = Environment(on_clock_skew=clock_warning)
    result = obtain(
        env,
        role=role,
        reason=reason,
        duration=parse_duration_option(duration, "--duration"),
        timeout=parse_duration_option(timeout, "--timeout"),
        wait=wait,
        profile=profile,
        write_profile=fmt == "profile",
        cache=True,
    )
    if isinstance(result, Grant):
        deliver(env, result, fmt=fmt, shell=shell, json_out=json_out)
    elif json_out:
        emit_json(public_dict(result))
    else:
        sys.stdout.write(result.request_id + "\n")


def wait_cmd(
    request_id: str = typer.Argument(..., help="The request to wait for (from `jitctl request`)."),
    timeout: str = typer.Option(
        None, "--timeout", help='Stop waiting after this long, e.g. "10m" (exit 4).'
    ),
    profile: str = PROFILE_OPTION,
    fmt: str = FORMAT_OPTION,
    shell: str = SHELL_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Resume waiting for a decision on your request, and get credentials once it is approved."""
    from jitctl.context import Environment
    from jitctl.decisions import get_request
    from jitctl.errors import Denied
    from jitctl.flow import issue

    check_format(fmt, shell, json_out)
    env = Environment(on_clock_skew=clock_warning)
    req = get_request(env, request_id)
    if req.requester != env.caller.person:
        raise Denied(f"request {request_id} belongs to {req.requester}; only they can wait for it")
    approved = await_approval(
        env, req, timeout=parse_duration_option(timeout, "--timeout"), cancel_on_interrupt=False
    )
    grant = issue(env, approved, evidence=None, profile=profile, write_profile=fmt == "profile")
    deliver(env, grant, fmt=fmt, shell=shell, json_out=json_out)


def exec_cmd(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="Role name from the policy."),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why you need access (an incident id helps)."
    ),
    duration: str = typer.Option(None, "--duration", "-d", help="How long the credentials last."),
    timeout: str = typer.Option(
        None, "--timeout", help="Stop waiting for approval after this long (exit 4)."
    ),
) -> None:
    """Run a command with credentials for ROLE in its environment only: jitctl exec ROLE --reason R -- CMD [ARGS...]"""
    from jitctl.context import Environment
    from jitctl.errors import UsageError
    from jitctl.execute import run_child
    from jitctl.formats import child_environment

    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError(
            "no command to run", 'put it after --: jitctl exec ROLE --reason "..." -- aws s3 ls'
        )
    env = Environment(on_clock_skew=clock_warning)
    grant = obtain(
        env,
        role=role,
        reason=reason,
        duration=parse_duration_option(duration, "--duration"),
        timeout=parse_duration_option(timeout, "--timeout"),
        wait=True,
        profile=None,
        write_profile=False,
        cache=False,  # nothing written to disk
    )
    render_grant(env, grant, json_out=False)
    code = run_child(argv, child_environment(env.environ, grant.credentials))
    raise typer.Exit(code)


def credential_process_cmd(
    role: str = typer.Argument(
        ..., help="Role name, as in `credential_process = jitctl credential-process ROLE`."
    ),
) -> None:
    """For ~/.aws/config: print your latest grant for ROLE while it has 5+ minutes left; never prompts."""
    from jitctl.cache import CredentialCache
    from jitctl.credproc import credential_process
    from jitctl.timeutil import SystemClock

    # No Environment: no STS, no policy, no PagerDuty. This runs inside every AWS SDK call.
    sys.stdout.write(
        credential_process(role, now=SystemClock().now(), cache=CredentialCache()) + "\n"
    )


def register(app: typer.Typer) -> None:
    app.command("request")(request)
    app.command("wait")(wait_cmd)
    app.command(
        "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(exec_cmd)
    app.command("credential-process")(credential_process_cmd)
