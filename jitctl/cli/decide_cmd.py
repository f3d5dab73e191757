"""`jitctl approve`, `jitctl deny`, `jitctl cancel`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jitctl.cli import complete
from jitctl.cli.output import JSON_OPTION, emit_json, interactive, safe, stderr_console
from jitctl.cli.picker import pick

if TYPE_CHECKING:
    from jitctl.context import Environment


def _confirm(env: Environment, request_id: str, verb: str, yes: bool) -> None:
    """On a terminal, show what is being decided and ask; never prompt when stdin is not a TTY."""
    if yes or not (env.inp.isatty() and interactive()):
        return  # scripts, pipes and --quiet never get a prompt (NO_COLOR still does)
    from jitctl.cli.show_cmd import describe
    from jitctl.errors import Interrupted

    req = env.service.check_may_decide(request_id)  # refuse before asking
    if req.status != "pending":
        return  # nothing to confirm: the decision itself says why it cannot be made
    describe(req, env.clock.now())
    if not typer.confirm(f"{verb} {request_id}?", default=False, err=True):
        raise Interrupted(f"not {verb.lower()}d; nothing recorded")


def approve(
    request_id: str = typer.Argument(
        None,
        help="The request to approve (omit on a terminal to pick one).",
        autocompletion=complete.requests("decide"),
    ),
    reason: str = typer.Option(None, "--reason", "-r", help="Why you approve (optional)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Approve a pending request, if you are one of its role's approvers (and not the requester)."""
    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    env = current_env()
    request_id = request_id or pick(env, "approve")
    _confirm(env, request_id, "Approve", yes)
    req, warnings = env.service.approve(request_id, reason)
    out = stderr_console()
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {safe(warning)}")
    if json_out:
        emit_json(public_dict(req))
    elif req.status == "approved":
        out.print(
            f"[green]✓[/] approved {safe(req.request_id)}: {safe(req.requester)} gets {safe(req.role)} now"
        )
    else:
        out.print(
            f"[green]✓[/] your approval of {safe(req.request_id)} is recorded "
            f"({len(req.approvers)}/{req.min_approvals}); it needs another approver"
        )


def deny(
    request_id: str = typer.Argument(
        None,
        help="The request to deny (omit on a terminal to pick one).",
        autocompletion=complete.requests("decide"),
    ),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why (required; the requester sees it)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Deny a pending request, if you are one of its role's approvers."""
    from jitctl.cli.session import current_env
    from jitctl.lifecycle.request_rules import DENY_REASON, check_reason
    from jitctl.models import public_dict

    env = current_env()
    check_reason(reason, DENY_REASON)  # before asking "Deny ...?": no reason, no question
    request_id = request_id or pick(env, "deny")
    _confirm(env, request_id, "Deny", yes)
    req, warnings = env.service.deny(request_id, reason)
    out = stderr_console()
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {safe(warning)}")
    if json_out:
        emit_json(public_dict(req))
    else:
        out.print(f"[green]✓[/] denied {safe(req.request_id)}")


def cancel(
    request_id: str = typer.Argument(
        None,
        help="Your pending request to withdraw (omit on a terminal to pick one).",
        autocompletion=complete.requests("cancel"),
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Withdraw your own pending request."""
    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    env = current_env()
    req = env.service.cancel(request_id or pick(env, "cancel"))
    if json_out:
        emit_json(public_dict(req))
    else:
        stderr_console().print(f"[green]✓[/] cancelled {safe(req.request_id)}")


def review(
    request_id: str = typer.Argument(
        ..., help="The break-glass request to review.", autocompletion=complete.requests("any")
    ),
    reason: str = typer.Option(None, "--reason", "-r", help="What you found (optional)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Review a break-glass grant after the fact, if you are one of its role's approvers."""
    from jitctl.cli.session import current_env
    from jitctl.models import public_dict

    req = current_env().service.review(request_id, reason)
    if json_out:
        emit_json(public_dict(req))
    else:
        stderr_console().print(
            f"[green]✓[/] reviewed break-glass grant {safe(req.request_id)} "
            f"({safe(req.requester)}, {safe(req.role)})"
        )


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
    app.command("deny")(deny)
    app.command("cancel")(cancel)
    app.command("review")(review)
