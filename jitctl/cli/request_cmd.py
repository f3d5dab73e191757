"""`jitctl request` and `wait`: getting credentials (`exec` and `credential-process`: exec_cmd)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import typer

from jitctl.cli import assignment_out, complete
from jitctl.cli.output import (
    JSON_OPTION_NO_SECRETS,
    emit_json,
    interactive,
    local_time,
    relative,
    safe,
    stderr_console,
    stdout,
)
from jitctl.cli.reuse import FRESH_OPTION, reused_grant
from jitctl.cli.waitline import WaitLine

if TYPE_CHECKING:
    from rich.console import Console

    from jitctl.context import Environment
    from jitctl.lifecycle.contract import Outcome
    from jitctl.models import AccessRequest, Issued

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
    from jitctl.credentials.formats import SHELLS
    from jitctl.errors import UsageError

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if shell not in SHELLS:
        raise UsageError(f"--shell {shell!r} is not one of {', '.join(SHELLS)}")
    if json_out and fmt != "profile":
        raise UsageError(f"--json and --format {fmt} both print to stdout", "choose one")


def check_destination(
    env: Environment,
    profile: str | None,
    fmt: str,
    role: str | None,
    request_id: str | None = None,
) -> None:
    """Before anything is requested or issued: can the credentials be written where asked?"""
    if fmt != "profile":
        return
    from jitctl.credentials.delivery import check_writable, default_profile
    from jitctl.credentials.profiles import aws_config_path, shared_credentials_path

    path = shared_credentials_path(env.environ)
    if profile is None and role is None:  # `wait`: an extension's goes where its grant is
        assert request_id is not None  # callers name the role or the request
        profile = default_profile(path, env.service.get(request_id))
    config = aws_config_path(env.environ)  # its region is written too
    check_writable(path, profile or f"jit-{role}", request_id, config=config)


def hand_over(
    env: Environment,
    issued: Issued,
    *,
    profile: str | None,
    fmt: str,
    shell: str,
    json_out: bool,
    cache: bool = True,
) -> None:
    """Secrets reach stdout only when a format asks for them; the summary goes to stderr."""
    from jitctl.credentials.delivery import deliver
    from jitctl.credentials.formats import credential_process_json, env_lines

    def failed(error: str) -> None:
        env.service.delivery_failed(issued.request.request_id, error)

    if issued.credentials is None:  # an identity_center grant: nothing to write or print
        render_grant(env, issued, None, json_out)
        return assignment_out.no_credentials(issued, fmt)
    written = deliver(
        env,
        issued,
        profile=profile,
        write_profile=fmt == "profile",
        cache=cache,
        on_failure=failed,
    )
    if fmt == "env":
        from jitctl.credentials.delivery import profile_region

        region = profile_region(env, issued.region)
        stdout().write(env_lines(issued.credentials, shell, region))
    elif fmt == "credential-process":
        stdout().write(credential_process_json(issued.credentials) + "\n")
    render_grant(env, issued, written, json_out)


def render_grant(env: Environment, issued: Issued, profile: str | None, json_out: bool) -> None:
    from jitctl.models import public_dict

    if json_out:
        doc = public_dict(issued.request)
        doc["profile"] = profile
        doc["on_call"] = issued.evidence.as_dict() if issued.evidence else None
        doc["notes"] = issued.notes
        emit_json(doc)
        return
    now = env.clock.now()
    out = stderr_console()
    if issued.credentials is None:
        return assignment_out.render_assignment(out, issued, now)
    expires = issued.credentials.expires
    where = f"in profile [bold]{safe(profile)}[/]" if profile else "issued"
    short = timedelta(0) < expires - now < timedelta(minutes=10)
    flag = " [yellow](under 10 minutes)[/]" if short else ""
    out.print(
        f"[green]✓[/] {safe(issued.request.role)}: credentials {where}, "
        f"expire {local_time(expires, now)} ({relative(expires, now)}){flag}"
    )
    if issued.evidence is not None:
        ev = issued.evidence
        until = f"until {local_time(ev.end, now)}" if ev.end else "permanently"
        out.print(f"  fast-tracked: on call, {safe(ev.matched_id)} level {ev.level} {until}")
    elif issued.request.approval == "break_glass":
        out.print(
            "  [bold red]break-glass[/]: every approver was told; the grant stays unreviewed "
            f"until one of them runs `jitctl review {safe(issued.request.request_id)}`"
        )
    elif issued.request.approval == "incident" and issued.request.incident:
        inc = issued.request.incident
        out.print(
            f"  fast-tracked: {safe(inc['how'])} incident {safe(inc['id'])} (#{inc['number']})"
        )
    elif issued.request.approvers:
        out.print(f"  approved by {safe(', '.join(issued.request.approvers))}")
    for note in issued.notes:
        out.print(f"  [yellow]note:[/] {safe(note)}")
    if profile:
        _profile_hint(env, out, issued.request.request_id, profile)


def _profile_hint(env: Environment, out: Console, request_id: str, profile: str) -> None:
    """A first command that works here: `--profile` beats keys in the environment (botocore
    drops its environment provider for an explicit profile); AWS_PROFILE does not."""
    import shlex

    out.print(
        f"  request {safe(request_id)}; try: "
        f"aws --profile {safe(shlex.quote(profile))} sts get-caller-identity"
    )
    if env.environ.get("AWS_ACCESS_KEY_ID"):
        # who wins differs: botocore, the AWS CLI, Go and Java take environment keys over
        # AWS_PROFILE; the JS SDK v3 takes the profile. --profile wins everywhere.
        out.print(
            f"  [yellow]note:[/] AWS_ACCESS_KEY_ID is set here: with AWS_PROFILE={safe(profile)} "
            "the AWS CLI, boto3 and the Go and Java SDKs still use those keys (the JS SDK v3 uses "
            "the profile); use --profile, or first: "
            "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN"
        )


def announce_pending(env: Environment, outcome: Outcome) -> None:
    req = outcome.request
    out = stderr_console()
    out.print(
        f"approval needed for {safe(req.role)}: {safe(outcome.fast_path_reason)}\n"
        f"  request [bold]{safe(req.request_id)}[/] is pending until {local_time(req.expires_at, env.clock.now())}; "
        f"approvers ({safe(', '.join(outcome.approvers))}) run: [bold]jitctl approve {safe(req.request_id)}[/]"
    )


def request_or_wait(
    env: Environment,
    *,
    role: str,
    reason: str | None,
    duration: timedelta | None,
    timeout: timedelta | None,
    wait: bool,
    break_glass: bool = False,
    incident: str | None = None,
) -> Issued | AccessRequest:
    """The request flow shared by `request` and `exec`: credentials, or the pending request
    (--no-wait)."""
    from jitctl.lifecycle.obtain import obtain

    def on_pending(outcome: Outcome) -> None:
        for warning in outcome.warnings:
            stderr_console().print(f"[yellow]warning:[/] {safe(warning)}")
        announce_pending(env, outcome)

    with WaitLine() as line:
        return obtain(
            env.service,
            role=role,
            reason=reason if reason is not None else _ask_reason(env),
            duration=duration,
            timeout=timeout,
            wait=wait,
            break_glass=break_glass,
            incident=incident,
            on_pending=on_pending,
            on_poll=lambda outcome: line.for_request(
                outcome.request.request_id, lambda: outcome.approvers
            ),
        )


def obtain_waiting(
    env: Environment, role: str, reason: str | None, duration: str | None, timeout: str | None
) -> Issued:
    """Credentials for ROLE, waiting for a decision if one is needed (`exec`, `console`)."""
    from jitctl.models import Issued

    issued = request_or_wait(
        env,
        role=role,
        reason=reason,
        duration=parse_duration_option(duration, "--duration"),
        timeout=parse_duration_option(timeout, "--timeout"),
        wait=True,
    )
    assert isinstance(issued, Issued)  # waiting ends in credentials or an error, never pending
    return issued


# `request` and `extend`: how long to wait for a decision before leaving it pending
WAIT_TIMEOUT_OPTION = typer.Option(
    None,
    "--timeout",
    help='Stop waiting after this long, e.g. "10m" (exit 4; resume with `jitctl wait ID`).',
)
BREAK_GLASS_OPTION = typer.Option(
    False,
    "--break-glass",
    help="Roles with break_glass only: credentials at once, every approver told, "
    "reviewed afterwards.",
)
INCIDENT_OPTION = typer.Option(
    None,
    "--incident",
    help="A PagerDuty incident id you are assigned to or acknowledged: ties the grant to it.",
)


def _ask_reason(env: Environment) -> str | None:
    """On a terminal, ask for the missing --reason; scripts (stdin not a TTY, --quiet) get
    None, and the one-line usage error, as before."""
    if not (env.inp.isatty() and interactive()):
        return None
    reason: str = typer.prompt("reason (an incident id helps)", err=True)
    return reason


def request(
    role: str = typer.Argument(
        ...,
        help="Role name from the policy, e.g. prod-readonly.",
        autocompletion=complete.roles,
    ),
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
    timeout: str = WAIT_TIMEOUT_OPTION,
    break_glass: bool = BREAK_GLASS_OPTION,
    incident: str = INCIDENT_OPTION,
    profile: str = PROFILE_OPTION,
    fmt: str = FORMAT_OPTION,
    shell: str = SHELL_OPTION,
    fresh: bool = FRESH_OPTION,
    json_out: bool = JSON_OPTION_NO_SECRETS,
) -> None:
    """Request access to ROLE: on call, credentials at once; otherwise wait for a peer's approval.

    Your live grant for ROLE is handed out again while it has 5+ minutes left (--fresh asks
    for a new one)."""
    from jitctl.cli.session import current_env
    from jitctl.models import Issued, public_dict

    check_format(fmt, shell, json_out)
    env = current_env()
    check_destination(env, profile, fmt, role)
    wanted = parse_duration_option(duration, "--duration")
    # a break-glass or incident-bound request is its own event: never answered by a reuse
    plain = not (fresh or break_glass or incident)
    result = (reused_grant(env, role, reason, wanted) if plain else None) or request_or_wait(
        env, role=role, reason=reason, duration=wanted, wait=wait, break_glass=break_glass,
        timeout=parse_duration_option(timeout, "--timeout"), incident=incident,
    )  # fmt: skip
    if isinstance(result, Issued):
        hand_over(env, result, profile=profile, fmt=fmt, shell=shell, json_out=json_out)
        if not wait and fmt == "profile" and not json_out:  # the contract: the id, either way
            stdout().write(result.request.request_id + "\n")
    elif json_out:
        emit_json(public_dict(result))
    else:
        stdout().write(result.request_id + "\n")


def wait_cmd(
    request_id: str = typer.Argument(
        None,
        help="The request to wait for (from `jitctl request`; omit on a terminal to pick one).",
        autocompletion=complete.requests("wait"),
    ),
    timeout: str = typer.Option(
        None, "--timeout", help='Stop waiting after this long, e.g. "10m" (exit 4).'
    ),
    profile: str = PROFILE_OPTION,
    fmt: str = FORMAT_OPTION,
    shell: str = SHELL_OPTION,
    json_out: bool = JSON_OPTION_NO_SECRETS,
) -> None:
    """Resume waiting for a decision on your request, and get credentials once it is approved."""
    from jitctl.cli.picker import pick
    from jitctl.cli.session import current_env

    check_format(fmt, shell, json_out)
    env = current_env()
    service = env.service
    request_id = request_id or pick(env, "wait")
    check_destination(env, profile, fmt, None, request_id)
    env.run.waiting = request_id  # a Ctrl-C leaves it pending: another run made it
    with WaitLine() as line:
        approved = service.wait(
            request_id,
            timeout=parse_duration_option(timeout, "--timeout"),
            on_poll=line.for_request(request_id, lambda: service.approvers_for(request_id)),
        )
    issued = service.issue(approved.request_id)
    hand_over(env, issued, profile=profile, fmt=fmt, shell=shell, json_out=json_out)


def register(app: typer.Typer) -> None:
    app.command("request")(request)
    app.command("wait")(wait_cmd)
