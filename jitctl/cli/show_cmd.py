"""`jitctl list` and `jitctl status`: seeing requests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from jitctl.cli import complete
from jitctl.cli.output import (
    JSON_OPTION,
    emit_json,
    local_time,
    print_table,
    relative,
    safe,
    stderr_console,
    stdout_console,
)

if TYPE_CHECKING:
    from rich.console import Console

    from jitctl.context import Environment
    from jitctl.lifecycle.grants import Liveness
    from jitctl.models import AccessRequest

REQUEST_COLUMNS = ["ID", "ROLE", "REQUESTER", "STATUS", "AGE", "EXPIRES", "REASON"]


def request_rows(
    reqs: Iterable[AccessRequest], now: datetime, states: dict[str, Liveness] | None = None
) -> list[list[str]]:
    """``states``: request id -> grants.Liveness, so that a dead grant reads as dead."""
    states = states or {}
    rows = []
    for r in reqs:
        state = states.get(r.request_id)
        rows.append(
            [
                safe(r.request_id),
                safe(r.role),
                safe(r.requester),
                safe(shown_status(r, state)) + (" (unreviewed)" if _unreviewed(r) else ""),
                relative(r.created_at, now).replace(" ago", ""),
                safe(expiry_text(r, state, now)),
                safe(r.reason),
            ]
        )
    return rows


def grant_states(
    env: Environment, reqs: list[AccessRequest], role: str | None = None
) -> dict[str, Liveness]:
    """Each issued or revoked request's liveness, derived now with the revocations that may
    cut it off (``role``: all of them are on that role). Reads only."""
    from jitctl.lifecycle.grants import liveness
    from jitctl.models import ISSUED

    now = env.clock.now()
    context = list(reqs)
    if any(r.status == ISSUED and _unexpired(r, now) for r in reqs):
        context += env.service.list(pending_only=False, mine=False, role=role, limit=1000)
    return {r.request_id: s for r in reqs if (s := liveness(r, context, now)) is not None}


def _unexpired(req: AccessRequest, now: datetime) -> bool:
    from jitctl.models import grant_end

    ends = grant_end(req)  # extensions included
    return ends is not None and ends > now


def shown_status(req: AccessRequest, state: Liveness | None) -> str:
    """The stored status, and for an issued grant that no longer works, why."""
    if state is None or state.live or state.state == "revoked":
        return req.status
    return f"{req.status} ({'cut off' if state.state == 'cut_off' else 'expired'})"


def expiry_text(req: AccessRequest, state: Liveness | None, now: datetime) -> str:
    """When a pending request or a grant ends, or ended (the EXPIRES column)."""
    if req.status == "pending":
        return relative(req.expires_at, now)
    if state is None or state.at is None:
        return "-"
    when = relative(state.at, now)
    if state.live:
        return when
    if state.state == "cut_off":
        return f"cut off {when} by revoking {state.by}"
    return f"{'revoked' if state.state == 'revoked' else 'ended'} {when}"


def _unreviewed(req: AccessRequest) -> bool:
    from jitctl.models import UNREVIEWED, review_state

    return review_state(req) == UNREVIEWED


def list_cmd(
    pending: bool = typer.Option(False, "--pending", help="Only pending requests."),
    mine: bool = typer.Option(False, "--mine", help="Only your own requests."),
    role: str = typer.Option(None, "--role", help="Only requests for this role."),
    unreviewed: bool = typer.Option(
        False, "--unreviewed", help="Only break-glass grants no approver has reviewed yet."
    ),
    limit: int = typer.Option(
        100, "--limit", min=1, max=1000, help="At most this many, newest first."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """List requests, newest first."""
    from jitctl.cli.session import current_env

    env = current_env()
    reqs = env.service.list(
        pending_only=pending, mine=mine, role=role, limit=limit, unreviewed=unreviewed
    )
    states = grant_states(env, reqs, role)
    if json_out:
        emit_json([request_doc(r, states.get(r.request_id)) for r in reqs])
        return
    if not reqs:
        what = " pending" if pending else " awaiting review" if unreviewed else ""
        stderr_console().print("no requests" + what)
        return
    print_table(
        REQUEST_COLUMNS,
        request_rows(reqs, env.clock.now(), states),
        whole=("ID", "ROLE"),
        drop=("AGE", "REQUESTER", "EXPIRES"),
    )


def request_doc(req: AccessRequest, state: Liveness | None) -> dict[str, Any]:
    """The contract's request JSON plus the grant's derived state (null when never issued)."""
    from jitctl.models import public_dict

    extra = state.as_dict() if state else {"grant_state": None, "grant_ended_at": None}
    return public_dict(req) | {"cut_off_by": None} | extra


def status(
    request_id: str = typer.Argument(
        ..., help="The request id.", autocompletion=complete.requests("any")
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show one request."""
    from jitctl.cli.session import current_env

    env = current_env()
    req = env.service.get(request_id)
    state = grant_states(env, [req], req.role).get(req.request_id)
    if json_out:
        emit_json(request_doc(req, state))
        return
    describe(req, env.clock.now(), state, out=stdout_console())


def describe(
    req: AccessRequest, now: datetime, state: Liveness | None = None, out: Console | None = None
) -> None:
    """Key facts of a request: `status`'s answer on stdout, or (default) the approver's
    confirmation screen on stderr."""
    from datetime import timedelta

    from jitctl.models import grant_end
    from jitctl.timeutil import format_duration

    out = out or stderr_console()
    rows = [
        ("request", req.request_id),
        ("role", req.role),
        ("requester", f"{req.requester} ({req.requester_arn})"),
        ("reason", req.reason),
        ("duration", format_duration(timedelta(seconds=req.duration_seconds))),
        ("status", shown_status(req, state)),
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
    rows += _follow_up_rows(req)
    if state is not None and not state.live:
        rows.append(("credentials", _ended_text(state, now)))
    elif (ends := grant_end(req)) is not None:
        left = ends - now
        flag = (
            "  [yellow](under 10 minutes left)[/]"
            if timedelta(0) < left < timedelta(minutes=10)
            else ""
        )
        rows.append(
            (
                "credentials",
                f"expire {local_time(ends, now)} ({relative(ends, now)}){flag}",
            )
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.print(
            # only our own credentials line carries markup; every other value is data
            f"  [bold]{key.ljust(width)}[/]  {value if key == 'credentials' else safe(value)}"
        )


def _follow_up_rows(req: AccessRequest) -> list[tuple[str, str]]:
    """What happened around the grant: its review, its incident and its page."""
    rows = []
    if req.extends:
        rows.append(("extends", f"grant {req.extends}"))
    if req.extensions:
        rows.append(("extended by", ", ".join(req.extensions)))
    if _unreviewed(req):
        rows.append(("review", f"unreviewed: an approver runs `jitctl review {req.request_id}`"))
    elif req.reviewed_by:
        why = f": {req.review_reason}" if req.review_reason else ""
        rows.append(("reviewed by", req.reviewed_by + why))
    if req.incident:
        inc = req.incident
        ends = " (access ends with it)" if inc.get("end_with_incident") else ""
        rows.append(("incident", f"{inc.get('id')} #{inc.get('number')} {inc.get('title')}{ends}"))
    if req.page:
        rows.append(
            ("page", f"{req.page.get('id')} on {req.page.get('service')}: {req.page.get('status')}")
        )
    return rows


def _ended_text(state: Liveness, now: datetime) -> str:
    at = f"{local_time(state.at, now)} ({relative(state.at, now)})" if state.at else "-"
    if state.state == "cut_off":
        return f"cut off {at} by the revocation of {safe(state.by)}"
    return f"{'revoked' if state.state == 'revoked' else 'expired'} {at}"


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command("status")(status)
