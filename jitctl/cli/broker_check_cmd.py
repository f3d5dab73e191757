"""`jitctl broker check`: is the broker a gate nobody can go around?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jitctl.cli.output import JSON_OPTION, emit_json, safe, stderr_console

if TYPE_CHECKING:
    from jitctl.context import Environment


def check(
    json_out: bool = JSON_OPTION,
    broker_role: str | None = typer.Option(
        None,
        "--broker-role",
        metavar="ARN",
        help="The broker's IAM role (the stack's BrokerRoleArn output; default [broker] role_arn).",
    ),
) -> None:
    """Check every policy role's trust policy: the broker's role alone may assume it.

    One line per role: ✓ gated, or ✗ with each hole (a principal other than the broker that
    may assume the role, conditions noted) and each action the broker needs but lacks
    (sts:AssumeRole, sts:SetSourceIdentity, sts:TagSession). Exits 3 if any role is not
    proven gated, 0 if all are. Needs iam:GetRole on the policy's roles.
    """
    from jitctl.broker.trustcheck import check_broker_arn, check_gate
    from jitctl.cli.session import current_env
    from jitctl.errors import Denied, UsageError

    env = current_env()
    broker_role = broker_role or env.config.broker.role_arn
    if not broker_role:
        raise UsageError(
            "which role is the broker's?", "pass --broker-role ARN or set [broker] role_arn"
        )
    broker = check_broker_arn(broker_role)  # bad input first, before AWS is touched
    findings = check_gate(env.policy, env.aws.client("iam"), broker)
    open_roles = [f.role for f in findings if not f.gated]
    warnings = _chaining_warnings(env, broker)
    if json_out:
        emit_json(
            {
                "broker_role": broker,
                "gated": not open_roles,
                "roles": [f.as_dict() for f in findings],
                "warnings": warnings,
            }
        )
    else:
        out = stderr_console()
        for line in warnings:
            out.print(f"[yellow]warning:[/] {safe(line)}")
        for f in findings:
            where = f"{safe(f.role)} ({safe(f.arn)})"
            if f.gated:
                out.print(f"[green]✓[/] {where}: gated (only the broker's role may assume it)")
            else:
                out.print(f"[red]✗[/] {where}: {safe('; '.join(f.problems()))}")
    if open_roles:
        raise Denied(
            f"{len(open_roles)} of {len(findings)} roles are not proven gated: "
            + ", ".join(open_roles),
            "make each role trust the broker's role alone: deploy/target-role-trust-policy.json",
        )


def _chaining_warnings(env: Environment, broker: str) -> list[str]:
    """The broker runs as a role, so what it assumes is role chaining: 1h at most."""
    from jitctl.lifecycle.chaining import warning

    line = warning([env.policy.role(n) for n in env.policy.roles], f"the broker's role ({broker})")
    return [line] if line else []
