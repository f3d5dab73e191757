"""`jitctl exec` and `credential-process`: credentials handed to one command, or to the AWS SDK."""

from __future__ import annotations

import typer

from jitctl.cli import complete
from jitctl.cli.output import stdout
from jitctl.cli.request_cmd import hand_over, obtain_waiting, parse_duration_option
from jitctl.cli.reuse import FRESH_OPTION, reused_unless_fresh


def exec_cmd(
    ctx: typer.Context,
    role: str = typer.Argument(
        ..., help="Role name from the policy.", autocompletion=complete.roles
    ),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why you need access (an incident id helps)."
    ),
    duration: str = typer.Option(None, "--duration", "-d", help="How long the credentials last."),
    timeout: str = typer.Option(
        None, "--timeout", help="Stop waiting for approval after this long (exit 4)."
    ),
    fresh: bool = FRESH_OPTION,
) -> None:
    """Run a command with credentials for ROLE in its environment only (your cached grant for ROLE while it has 5+ minutes left): jitctl exec ROLE --reason R -- CMD [ARGS...]"""
    from jitctl.cli.session import current_env
    from jitctl.credentials.execute import check_runnable, run_child
    from jitctl.credentials.formats import child_environment
    from jitctl.errors import UsageError

    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError(
            "no command to run", 'put it after --: jitctl exec ROLE --reason "..." -- aws s3 ls'
        )
    env = current_env()
    check_runnable(argv, env.environ)
    grant = reused_unless_fresh(
        env, role, reason, parse_duration_option(duration, "--duration"), fresh
    )
    if grant is None:
        grant = obtain_waiting(env, role, reason, duration, timeout)
        # cached (keyring or a 0600 file) for the next exec and credential-process; no profile
        hand_over(env, grant, profile=None, fmt="exec", shell="sh", json_out=False)
    from jitctl.credentials.delivery import profile_region

    region = profile_region(env, grant.region)  # the role's, else yours, as in its profile
    code = run_child(argv, child_environment(env.environ, grant.keys(), region))
    raise typer.Exit(code)


def credential_process_cmd(
    role: str = typer.Argument(
        ...,
        help="Role name, as in `credential_process = jitctl credential-process ROLE`.",
        autocompletion=complete.roles,
    ),
) -> None:
    """For ~/.aws/config: print your latest grant for ROLE while it has 5+ minutes left; never prompts."""
    import os

    from jitctl.cli.session import current_env
    from jitctl.credentials.credproc import (
        GUARD,
        NoFreshCredentials,
        check_known_role,
        credential_process,
        not_within_itself,
    )
    from jitctl.timeutil import SystemClock

    # The Environment's cache for the caller under this config: one sts:GetCallerIdentity
    # (who the caller is), no policy, no PagerDuty. An SDK runs this before credentials expire.
    not_within_itself()
    try:
        env = current_env()
        try:
            doc = credential_process(role, now=SystemClock().now(), cache=env.credential_cache)
        except NoFreshCredentials:
            check_known_role(env, role)  # a typo is exit 2 naming the closest role
            raise
    finally:
        os.environ.pop(GUARD, None)
    stdout().write(doc + "\n")


def register(app: typer.Typer) -> None:
    app.command(
        "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(exec_cmd)
    app.command("credential-process")(credential_process_cmd)
