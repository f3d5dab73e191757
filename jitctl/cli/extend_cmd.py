"""`jitctl extend`: more time on your live grant, asked for as a request of its own."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import typer

from jitctl.cli import complete
from jitctl.cli.output import JSON_OPTION_NO_SECRETS, emit_json, safe, stderr_console, stdout
from jitctl.cli.request_cmd import (
    PROFILE_OPTION,
    WAIT_TIMEOUT_OPTION,
    announce_pending,
    check_destination,
    hand_over,
    parse_duration_option,
)
from jitctl.cli.waitline import WaitLine

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.lifecycle.contract import Outcome
    from jitctl.models import AccessRequest, Issued


def extend(
    request_id: str = typer.Argument(
        ...,
        help="Your live grant (its request id, or an extension's).",
        autocompletion=complete.requests("extend"),
    ),
    by: str = typer.Option(
        None, "--by", help='How much longer, e.g. "30m"; at most the role\'s max_duration.'
    ),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why you need more time (an incident id helps)."
    ),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait for a peer's decision (default), or record the extension and exit.",
    ),
    timeout: str = WAIT_TIMEOUT_OPTION,
    profile: str = PROFILE_OPTION,
    json_out: bool = JSON_OPTION_NO_SECRETS,
) -> None:
    """Extend your live grant: on call, at once; otherwise after a peer's approval.

    The extension is a request of its own, decided by the role's rules as they are now. Once
    approved, the grant ends --by later: a new session is written to the profile that holds
    the grant (credential-process and exec pick it up); the old one ends on its own. A grant
    never lasts longer than the role's max_total from its first issue (default 12h)."""
    from jitctl.cli.session import current_env
    from jitctl.credentials.delivery import grant_profile
    from jitctl.credentials.profiles import shared_credentials_path
    from jitctl.errors import UsageError
    from jitctl.models import Issued, public_dict

    env = current_env()
    wanted = parse_duration_option(by, "--by")
    if wanted is None:
        raise UsageError("--by is required: how much longer the grant should last", "e.g. --by 30m")
    grant = env.service.get(request_id)
    grant_id = grant.extends or grant.request_id
    target = profile or grant_profile(shared_credentials_path(env.environ), grant_id, grant.role)
    check_destination(env, target, "profile", grant.role)
    result = _follow(env, request_id, wanted, reason, wait, timeout)
    if isinstance(result, Issued):
        hand_over(env, result, profile=target, fmt="profile", shell="sh", json_out=json_out)
        if not json_out:
            stderr_console().print(
                f"  extends grant {safe(grant_id)}; its earlier session ends on its own"
            )
            if not wait:
                stdout().write(result.request.request_id + "\n")
    elif json_out:
        emit_json(public_dict(result))
    else:
        stdout().write(result.request_id + "\n")


def _follow(
    env: Environment,
    request_id: str,
    by: timedelta,
    reason: str | None,
    wait: bool,
    timeout: str | None,
) -> Issued | AccessRequest:
    """The extension's outcome: issued at once, or pending, or issued once approved."""
    from jitctl.lifecycle.obtain import follow

    def on_pending(outcome: Outcome) -> None:
        for warning in outcome.warnings:
            stderr_console().print(f"[yellow]warning:[/] {safe(warning)}")
        announce_pending(env, outcome)

    with WaitLine() as line:
        outcome = env.service.extend(request_id, by, reason)
        return follow(
            env.service,
            outcome,
            timeout=parse_duration_option(timeout, "--timeout"),
            wait=wait,
            on_pending=on_pending,
            on_poll=lambda o: line.for_request(o.request.request_id, lambda: o.approvers),
        )


def register(app: typer.Typer) -> None:
    app.command("extend")(extend)
