"""`jitctl revoke`: end an issued grant now, in AWS and in the records."""

from __future__ import annotations

from typing import Any

import typer

from jitctl.cli import complete
from jitctl.cli.output import JSON_OPTION, emit_json, local_time, safe, stderr_console


def revoke(
    request_id: str = typer.Argument(
        None,
        help="The issued request to revoke (omit on a terminal to pick one of your grants).",
        autocompletion=complete.requests("revoke"),
    ),
    reason: str = typer.Option(None, "--reason", "-r", help="Why (required; it is audited)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Revoke an issued grant: its sessions are denied in AWS at once.

    The requester or an approver of the role may revoke. Every session of the requester on
    the role issued before the cutoff (now, or 3 minutes after the grant was issued if that
    is later) is denied by an inline policy jitctl-revocations on the role, read back to
    confirm; a grant they get later works. Needs iam:GetRolePolicy and iam:PutRolePolicy on
    the role (the broker's, in broker mode).
    """
    from jitctl.cli.picker import pick
    from jitctl.cli.session import current_env
    from jitctl.lifecycle.request_rules import REVOKE_REASON, check_reason
    from jitctl.models import public_dict
    from jitctl.revocation.revoke import remove_local_copies
    from jitctl.timeutil import parse_rfc3339

    env = current_env()
    check_reason(reason, REVOKE_REASON)  # before picking: no reason, no question
    done = env.service.revoke(request_id or pick(env, "revoke"), reason)
    req = done.request
    local = remove_local_copies(env, req)
    out = stderr_console()
    for note in [*done.notes, *local.notes]:
        out.print(f"[yellow]note:[/] {safe(note)}")
    for profile in local.profiles_removed:
        out.print(f"removed profile {safe(profile)} from your AWS credentials file")
    if json_out:
        details = done.details | {
            "profiles_removed": local.profiles_removed,
            "cache_removed": local.cache_removed,
        }
        emit_json(public_dict(req) | {"revocation": details})
        return
    who, role = safe(req.requester), safe(req.role)
    when = local_time(parse_rfc3339(done.details["cutoff"]), env.clock.now())
    if done.already_revoked:
        by = f" by {safe(req.revoked_by)}" if req.revoked_by else ""
        out.print(
            f"[green]✓[/] {safe(req.request_id)} was already revoked{by}; sessions of {who} "
            f"on {role} issued before {when} stay denied"
        )
    else:
        out.print(
            f"[green]✓[/] revoked {safe(req.request_id)}: sessions of {who} on {role} "
            f"issued before {when} are denied"
        )


def sweep(json_out: bool = JSON_OPTION) -> None:
    """Housekeeping for a scheduler: end grants whose incident resolved, resolve pages.

    Records the expiry of pending requests past their TTL, resolves the PagerDuty pages of
    requests that were decided, cancelled or expired, and revokes grants tied to an incident
    that resolved when their role says end_with_incident (as `jitctl revoke` does, actor
    pagerduty). Run it every few minutes from cron; through a broker, the broker does it.
    """
    from jitctl.cli.session import current_env

    report = current_env().service.sweep()
    if json_out:
        emit_json(report)
    else:
        _show_sweep(report)
    if report["problems"]:  # a scheduler should notice: 5, the next run retries; 2, fix setup
        from jitctl.errors import ConfigError, Unavailable

        failed = ConfigError if report.get("exit_code") == 2 else Unavailable
        raise failed(f"sweep finished with {len(report['problems'])} problem(s)")


def _show_sweep(report: dict[str, Any]) -> None:
    out = stderr_console()
    for done in report["revoked"]:
        out.print(
            f"[green]✓[/] revoked {safe(done['request_id'])}: incident {safe(done['incident'])} resolved"
        )
    for request_id in report["pages_resolved"]:
        out.print(f"[green]✓[/] resolved the page of {safe(request_id)}")
    for request_id in report["expired"]:
        out.print(f"expired {safe(request_id)}")
    for problem in report["problems"]:
        out.print(f"[yellow]warning:[/] {safe(problem)}")
    out.print(f"swept {report['checked']} request(s)")


def register(app: typer.Typer) -> None:
    app.command("revoke")(revoke)
    app.command("sweep")(sweep)
