"""`jitctl policy ...`: validate policy files (pre-commit, CI), explain a role, diff two versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from jitctl.cli import complete
from jitctl.cli.output import JSON_OPTION, stdout
from jitctl.cli.policy_diff_cmd import diff_cmd

if TYPE_CHECKING:
    from jitctl.policy.roles import Role


policy_app = typer.Typer(help="Check, explain and compare the access policy.", no_args_is_help=True)


@policy_app.command("validate")
def validate_cmd(
    paths: list[Path] = typer.Argument(
        None,
        metavar="PATH",
        help="Policy files or directories; default: the configured policy. A file is read "
        "with the other .toml files of its directory (its groups may be there); only its own "
        "findings are reported.",
        show_default=False,
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Check policy files: one FILE:LINE: MESSAGE line per error on stdout, exit 2 if any."""
    from jitctl.cli.output import emit_json, safe, stderr_console
    from jitctl.errors import ExitCode
    from jitctl.policy.explain import validate
    from jitctl.sanitize import clean

    if not paths:
        from jitctl.config.settings import load_config

        paths = [load_config().require_policy_path()]
    result = validate(paths)
    warnings = _chaining_warnings(result.over_1h) + _session_warnings(result.identity_center)
    if json_out:
        emit_json(result.to_json() | {"warnings": warnings})
    else:
        for finding in result.errors:
            stdout().write(clean(str(finding)) + "\n")
        stdout().flush()
        err = stderr_console()
        for skipped in result.skipped:
            err.print(f"{safe(skipped)}: not a policy file nor referenced by one; skipped")
        for line in warnings:
            err.print(f"[yellow]warning:[/] {safe(line)}")
        mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
        err.print(f"{mark} {safe(result.summary())}")
    if not result.ok:
        raise typer.Exit(int(ExitCode.USAGE))


def _session_warnings(roles: tuple[Role, ...]) -> list[str]:
    """identity_center roles whose permission set keeps a session longer than max_duration,
    read from AWS when it can be (a CI job without AWS access gets a note instead)."""
    if not roles:
        return []
    from jitctl.cli.session import current_env
    from jitctl.errors import JitctlError
    from jitctl.identity_center.reconcile import session_warnings

    try:
        return session_warnings(current_env(), list(roles))
    except JitctlError as exc:
        return [f"permission sets' session durations not checked: {exc.message}"]


def _chaining_warnings(over_1h: tuple[str, ...]) -> list[str]:
    """Roles over 1h, when the config names a broker: a broker runs on role credentials
    (Lambda, ECS, EC2), so it can issue 1h at most (role chaining). Without a broker, who
    assumes the roles is whoever requests (an IAM user or an SSO login): `doctor` tells."""
    from jitctl.config.settings import load_config
    from jitctl.errors import JitctlError

    if not over_1h:
        return []
    try:
        broker = load_config().broker
    except JitctlError:  # validating files without a (valid) config: nothing to say
        return []
    if not (broker.role_arn or broker.url):
        return []
    return [
        f"max_duration over 1h: {', '.join(over_1h)}; the broker runs on role credentials, so "
        "AWS caps what it issues at 1h (role chaining) and these grants are cut to 1h"
    ]


@policy_app.command("explain")
def explain_cmd(
    role: str = typer.Argument(..., help="The role to explain.", autocompletion=complete.roles),
    as_person: str = typer.Option(
        None, "--as", metavar="PERSON", help="An email or principal ARN: may they approve it?"
    ),
    policy_path: Path | None = typer.Option(
        None, "--policy", help="A policy file or directory instead of the configured one."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Who may request ROLE, who is fast-tracked, who approves, for how long, with what."""
    if policy_path is None:  # the configured policy: here, or the broker's
        from jitctl.cli.session import current_env

        doc = current_env().service.explain(role, as_person)
    else:
        from jitctl.policy.explain import explain
        from jitctl.policy.load import load_policy

        doc = explain(load_policy(policy_path), role, as_person)
    if json_out:
        from jitctl.cli.output import emit_json

        emit_json(doc)
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=not stdout().isatty())
    for line in render(doc):
        console.print(line)


def _join(items: list[str]) -> str:
    from jitctl.cli.output import safe

    return ", ".join(safe(i) for i in items)


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"  {key.ljust(width)}  {value}" for key, value in rows]


def render(doc: dict[str, Any]) -> list[str]:
    """The human explanation: rich markup lines, every value from a file escaped."""
    from jitctl.cli.output import safe

    lines = [f"[bold]{safe(doc['role'])}[/]"]
    if doc["description"]:
        lines.append(f"  {safe(doc['description'])}")
    lines += _rows([("arn", safe(doc["arn"])), ("defined in", safe(doc["source"]))])

    lines += ["", "[bold]Who may request[/]", f"  {safe(doc['who_may_request']['who'])}."]
    lines.append(f"  [yellow]Note:[/] {safe(doc['who_may_request']['gate'])}.")
    lines += ["", "[bold]Fast track[/] (credentials at once, no approval)"]
    lines += _render_fast_track(doc["fast_track"], doc.get("incident_fast_track"))
    lines += ["", "[bold]Approval[/]", *_render_approval(doc["approval"])]
    lines += ["", "[bold]Break-glass[/]", *_render_break_glass(doc.get("break_glass"))]
    lines += ["", "[bold]Limits[/]", *_render_limits(doc["limits"])]
    lines += ["", "[bold]Permissions[/]", *_render_permissions(doc["session_policy"])]
    if "as" in doc:
        lines += ["", *_render_as(doc)]
    return lines


def _render_fast_track(fast: dict[str, Any] | None, incident: dict[str, Any] | None) -> list[str]:
    """Both fast tracks, each named: the on-call one and the incident one."""
    if fast is None and incident is None:
        return ["  never: neither an on_call nor an incident rule, so every request needs approval"]
    lines = _render_on_call(fast) if fast is not None else []
    if incident is not None:
        ends = "; access ends when the incident resolves" if incident["end_with_incident"] else ""
        lines.append(
            "  whoever is assigned to, or acknowledged, an open PagerDuty incident on service "
            f"{_join(incident['services'])}{ends}"
        )
    return lines


def _render_on_call(fast: dict[str, Any]) -> list[str]:
    what = [
        f"{label} {_join(fast[key])}"
        for key, label in (
            ("escalation_policies", "escalation policy"),
            ("schedules", "schedule"),
            ("services", "service"),
        )
        if fast[key]
    ]
    level = fast["max_escalation_level"]
    at = f", at escalation level {level} or lower" if level else ", at any escalation level"
    return [f"  whoever is on call now in PagerDuty for {' or '.join(what)}{at}"]


def _render_approval(approval: dict[str, Any] | None) -> list[str]:
    from jitctl.cli.output import safe

    if approval is None:
        return ["  nobody approves: only a fast track grants this role"]
    shown = []
    for entry in approval["approvers"]:
        members = approval["groups"].get(entry)  # a group: show who is in it
        shown.append(safe(entry) + (f" ({_join(members)})" if members is not None else ""))
        if entry in approval.get("on_call", {}):
            shown[-1] += _on_call_now(approval["on_call"][entry], approval.get("on_call_problem"))
    n = approval["min_approvals"]
    return _rows(
        [
            ("approvers", ", ".join(shown)),
            (
                "needs",
                f"{n} approval{'s' if n != 1 else ''} from distinct approvers, never the requester",
            ),
            ("expires", f"a pending request expires after {safe(approval['request_ttl'])}"),
            ("decided from", _decided_from(approval.get("approve_from", ["cli"]))),
        ]
    )


def _decided_from(channels: list[str]) -> str:
    """Where approve/deny may come from: the CLI (an AWS identity) and/or Slack's buttons."""
    ways = {"cli": "the CLI (`jitctl approve`/`deny`)", "slack": "Slack's Approve/Deny buttons"}
    return " and ".join(ways.get(c, c) for c in channels)


def _on_call_now(people: list[str] | None, problem: str | None) -> str:
    """What an oncall:/schedule: entry means now: who is on call, or why nobody."""
    from jitctl.cli.output import safe

    if people is None:
        return " (whoever is on call there when a decision is made)"
    if problem:
        return f" ([yellow]nobody: {safe(problem)}[/])"
    return f" (on call now: {_join(people)})" if people else " (nobody on call there now)"


def _render_break_glass(glass: dict[str, Any] | None) -> list[str]:
    from jitctl.cli.output import safe

    if glass is None:
        return ["  not allowed: --break-glass is refused for this role"]
    return [f"  at most {safe(glass['max_duration'])}; {safe(glass['note'])}"]


def _render_limits(limits: dict[str, Any]) -> list[str]:
    from jitctl.cli.output import safe

    lines = _rows(
        [
            ("max duration", f"{limits['max_duration']} (default {limits['default_duration']})"),
            ("minimum", f"{limits['sts_min_duration']} (STS)"),
            ("max total", f"{limits['max_total']} from the first issue, extensions included"),
        ]
    )
    return [*lines, f"  {safe(limits['note'])}"]


def _render_permissions(sp: dict[str, Any]) -> list[str]:
    """The session policy's statements, allows first; denies apart, since they always win."""
    from jitctl.cli.output import safe

    if sp["path"] is None:
        return [f"  {safe(sp['summary'])}"]
    lines = [f"  {safe(sp['summary'])} ({safe(sp['path'])}):"]
    allows = [s for s in sp["statements"] if s["effect"] != "Deny"]
    denies = [s for s in sp["statements"] if s["effect"] == "Deny"]
    for stmt in allows:
        lines.append(f"  [green]{safe(stmt['effect'])}[/] {_statement(stmt)}")
    if denies:
        lines.append("  explicit denies (they win over any Allow):")
    for stmt in denies:
        lines.append(f"  [red]Deny[/] {_statement(stmt)}")
    return lines


def _statement(stmt: dict[str, Any]) -> str:
    if stmt["actions"]:
        acts = _join(stmt["actions"])
    else:
        acts = f"every action except {_join(stmt['not_actions'])}"
    if stmt["resources"]:
        res = _join(stmt["resources"])
    else:
        res = f"everything except {_join(stmt['not_resources'])}"
    cond = " (with conditions)" if stmt["conditional"] else ""
    return f"{acts} [dim]on[/] {res}{cond}"


def _render_as(doc: dict[str, Any]) -> list[str]:
    from jitctl.cli.output import safe

    who = doc["as"]
    name = safe(who["person"] or who["arn"])
    lines = [f"[bold]As {name}[/]"]
    if not who["recognised"]:
        problem = "maps to no person" if who["arn"] else "is not an email address or principal ARN"
        lines.append(f"  [yellow]{problem}[/], so it could not request this role at all")
    if who["is_approver"]:
        lines.append(f"  an approver for {safe(doc['role'])}: may approve other people's requests")
    else:
        lines.append(f"  not an approver for {safe(doc['role'])}")
    lines.append(f"  {safe(who['note'])}")
    if "other_approvers" in who:
        n, need = who["other_approvers"], doc["approval"]["min_approvals"]
        text = f"  a request from {name} can be approved by {n} other approver{'s' * (n != 1)}"
        if not who["can_be_approved"]:
            text += f" [yellow]but needs {need}: only the fast track would work[/]"
        lines.append(text)
    return lines


policy_app.command("diff")(diff_cmd)  # defined in its own module, listed after these


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
