"""`jitctl doctor`, `jitctl whoami`, `jitctl roles`."""

from __future__ import annotations

import typer

from jitctl.cli.output import (
    JSON_OPTION,
    emit_json,
    local_time,
    safe,
    stderr_console,
    stdout_console,
)

MARKS = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[dim]-[/]", "warn": "[yellow]![/]"}


def doctor(
    json_out: bool = JSON_OPTION,
) -> None:
    """Check config, policy, AWS identity, PagerDuty, store and audit log; say how to fix what fails."""
    from jitctl.cli.session import current_env
    from jitctl.doctor.checks import run_doctor

    result = run_doctor(current_env())
    if json_out:
        emit_json(
            {
                "ok": result.exit_code == 0,
                "exit_code": result.exit_code,
                "checks": [c.as_dict() for c in result.checks],
            }
        )
    else:
        out = stdout_console()
        for check in result.checks:
            out.print(f"{MARKS[check.status]} [bold]{safe(check.name)}[/]: {safe(check.detail)}")
            if check.fix:
                out.print(f"    fix: {safe(check.fix)}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def whoami(
    json_out: bool = JSON_OPTION,
) -> None:
    """Who AWS says you are, the person jitctl maps you to, and your PagerDuty on-calls now."""
    from jitctl.cli.session import current_env
    from jitctl.timeutil import parse_rfc3339

    env = current_env()
    doc = env.service.describe_caller()
    if json_out:
        emit_json(doc)
        return
    out = stdout_console()
    out.print(f"principal  {safe(doc['principal'])}\nperson     {safe(doc['person'])}")
    user = doc["pagerduty_user"]
    if user:
        out.print(f"pagerduty  {safe(user['id'])} ({safe(user['name'])})")
    else:
        out.print(f"pagerduty  [yellow]{safe(doc['pagerduty_error'])}[/]")
    now = env.clock.now()
    for oc in doc["on_calls"]:
        until = f"until {local_time(parse_rfc3339(oc['end']), now)}" if oc["end"] else "permanently"
        sched = f", schedule {safe(oc['schedule']['id'])}" if oc["schedule"] else ""
        out.print(
            f"on call    {safe(oc['escalation_policy']['id'])} level {oc['level']}{sched} {until}"
        )
    if user and not doc["on_calls"]:
        out.print("on call    not now")


def roles(
    json_out: bool = JSON_OPTION,
) -> None:
    """The roles you may request, and whether each would fast-track you right now."""
    from jitctl.cli.output import print_table
    from jitctl.cli.session import current_env
    from jitctl.timeutil import format_duration, parse_rfc3339

    env = current_env()
    rows = env.service.roles()
    if json_out:
        emit_json(rows)
        return
    from datetime import timedelta

    now = env.clock.now()
    cells = []
    for r in rows:
        if r["fast_track"]:
            until = r["fast_track_until"]
            now_cell = "[green]fast track[/]" + (
                f" until {local_time(parse_rfc3339(until), now)}" if until else ""
            )
        elif r.get("pagerduty_error"):
            now_cell = "[yellow]approval (PagerDuty cannot tell)[/]"
        elif r["has_fast_track"]:
            now_cell = "approval (" + _not_now(r.get("fast_tracks") or ["on_call"]) + ")"
        else:
            now_cell = "approval"
        need = f"{r['min_approvals']} of " if r["min_approvals"] and r["min_approvals"] > 1 else ""
        cells.append(
            [
                safe(str(r.get("account") or "-")),
                safe(r["role"]) + (" [dim](sso)[/]" if r.get("kind") == "identity_center" else ""),
                format_duration(timedelta(seconds=r["max_duration_seconds"])),
                now_cell,
                need + safe(", ".join(r["approvers"]) or "-"),
            ]
        )
    columns = ["ACCOUNT", "ROLE", "MAX", "NOW", "APPROVERS"]  # rows come grouped by account
    print_table(columns, cells, whole=("ROLE",), drop=("MAX", "APPROVERS", "ACCOUNT"))
    errors = {r["pagerduty_error"] for r in rows if r.get("pagerduty_error")}
    for error in sorted(errors):  # one session: at most one reason, said once
        stderr_console().print(f"[yellow]pagerduty:[/] {safe(error)}")


def _not_now(tracks: list[str]) -> str:
    """Why neither fast track applies now, naming each the role has."""
    said = {"on_call": "not on call", "incident": "no open incident on its services"}
    return ", ".join(said[t] for t in tracks)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("whoami")(whoami)
    app.command("roles")(roles)
