"""`jitctl console ROLE`: an AWS console sign-in for the role, through the same request flow."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from jitctl.cli import complete
from jitctl.cli.output import local_time, relative, safe, stderr_console, stdout
from jitctl.cli.reuse import FRESH_OPTION

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.credentials.console import SignIn
    from jitctl.models import Issued


def console(
    role: str = typer.Argument(
        ..., help="Role name from the policy, e.g. prod-readonly.", autocompletion=complete.roles
    ),
    reason: str = typer.Option(
        None, "--reason", "-r", help="Why you need access (an incident id helps)."
    ),
    duration: str = typer.Option(
        None, "--duration", "-d", help='How long, e.g. "30m"; the console session ends with it.'
    ),
    timeout: str = typer.Option(
        None, "--timeout", help="Stop waiting for approval after this long (exit 4)."
    ),
    print_url: bool = typer.Option(
        False, "--print", help="Print the sign-in URL on stdout instead of opening a browser."
    ),
    fresh: bool = FRESH_OPTION,
) -> None:
    """Sign in to the AWS console as ROLE: on call at once, otherwise after approval. Opens your browser (prints the URL with --print or without a display)."""
    from jitctl.cli.request_cmd import obtain_waiting, parse_duration_option
    from jitctl.cli.reuse import reused_unless_fresh
    from jitctl.cli.session import current_env
    from jitctl.credentials.console import sign_in

    env = current_env()
    issued = reused_unless_fresh(
        env, role, reason, parse_duration_option(duration, "--duration"), fresh
    )
    if issued is None:
        issued = obtain_waiting(env, role, reason, duration, timeout)
        _keep(env, issued)
    now = env.clock.now()
    signin = sign_in(issued.keys(), settings=env.config.console, now=now)
    opened = not print_url and has_display(env.environ) and _open(signin.url)
    if not opened:
        stdout().write(signin.url + "\n")
        stdout().flush()
    _summary(issued, signin, now, opened)


def _keep(env: Environment, issued: Issued) -> None:
    """Cached like every grant, so that the next `console`, `exec` or `request` reuses it
    rather than leaving another live grant behind (a failed sign-in used to)."""
    from jitctl.cli.assignment_out import no_credentials
    from jitctl.credentials.delivery import deliver

    if issued.credentials is None:  # identity_center: the access portal is its console
        no_credentials(issued, "a console sign-in URL")

    def failed(error: str) -> None:
        env.service.delivery_failed(issued.request.request_id, error)

    deliver(env, issued, profile=None, write_profile=False, cache=True, on_failure=failed)


def has_display(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether a browser can open here: a named $BROWSER, a desktop session on macOS or
    Windows (not over SSH), an X11 or Wayland display elsewhere."""
    if environ.get("BROWSER"):
        return True
    if platform in ("darwin", "win32"):
        return not (environ.get("SSH_CONNECTION") or environ.get("SSH_TTY"))
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def _open(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def _summary(issued: Issued, signin: SignIn, now: datetime, opened: bool) -> None:
    out = stderr_console()
    req = issued.request
    where = "opened in your browser" if opened else "URL printed on stdout"
    ends = signin.session_ends_at
    until = f"; the session ends {local_time(ends, now)} ({relative(ends, now)})" if ends else ""
    out.print(f"[green]✓[/] {safe(req.role)}: console sign-in {where}{until}")
    out.print(
        f"  request {safe(req.request_id)}; the link signs in whoever opens it within 15 minutes: "
        "keep it to yourself"
    )


def register(app: typer.Typer) -> None:
    app.command("console")(console)
