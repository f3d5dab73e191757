"""Entry point: the typer app, global options, and the one error handler.

Keep imports here light: `jitctl --help` and `--version` must not import boto3, botocore,
keyring or pagerduty (tests/test_startup.py checks it).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from jitctl import __version__
from jitctl.errors import DISK_FULL, ExitCode, JitctlError

if TYPE_CHECKING:
    from typer._click.core import Command, Context

    from jitctl.context import Environment


class _Commands(TyperGroup):
    """The root group. A Ctrl-C inside a command ends the run through the core's one path
    (jitctl.lifecycle.interrupts: the pending request this run recorded is cancelled); left alone,
    typer would turn it into a silent exit 130."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from jitctl.lifecycle.interrupts import interrupted

            raise interrupted(ctx.obj) from None


app = typer.Typer(
    cls=_Commands,
    name="jitctl",
    help="Just-in-time AWS access: on call, get credentials at once; otherwise ask a peer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # help uses the terminal's width (click's default stops at 80 columns)
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


QUIET_HELP = "No prompts, spinners, colour or progress messages."
DEBUG_HELP = "Show tracebacks for errors."


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"jitctl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Just-in-time AWS access: on call, get credentials at once; otherwise ask a peer."""
    if quiet:
        _be_quiet()


def _be_quiet() -> None:
    from jitctl.cli.session import current_env

    current_env().quiet = True


def _with_global_options(group: Command) -> Command:
    """--quiet and --debug after the command too (`jitctl request R --quiet`), not only
    before it: click reads a group's options only before the command name, so every command
    gets its own copy, unless it already has an option of that name."""
    for command in _walk(group):
        taken = {opt for param in command.params for opt in getattr(param, "opts", ())}
        if not taken & {"--quiet", "-q"}:
            command.params.append(_flag(["--quiet", "-q"], QUIET_HELP, _quiet_flag))
        if "--debug" not in taken:  # run() reads it from argv; here so the parser accepts it
            command.params.append(_flag(["--debug"], DEBUG_HELP))
    return group


def _flag(decls: list[str], text: str, callback: Callable[..., None] | None = None) -> Any:
    from typer.core import TyperOption

    return TyperOption(
        param_decls=decls, is_flag=True, expose_value=False, callback=callback, help=text
    )


def _quiet_flag(ctx: object, param: object, value: bool) -> None:
    if value:
        _be_quiet()


def _walk(group: Command) -> list[Command]:
    """Every command and group below ``group`` (a plain command has none)."""
    found: list[Command] = []
    for command in getattr(group, "commands", {}).values():
        found.append(command)
        found += _walk(command)
    return found


# Every command, in the order `jitctl --help` lists them, and the module in jitctl/cli/ whose
# register() adds it; groups (audit, policy, broker) come last, as typer lists them after the
# plain commands. The one list of them: a run imports only its command's module (_modules_for).
COMMANDS: dict[str, str] = {
    "request": "request_cmd",
    "wait": "request_cmd",
    "extend": "extend_cmd",
    "exec": "exec_cmd",
    "credential-process": "exec_cmd",
    "console": "console_cmd",
    "approve": "decide_cmd",
    "deny": "decide_cmd",
    "cancel": "decide_cmd",
    "review": "decide_cmd",
    "list": "show_cmd",
    "status": "show_cmd",
    "grants": "grants_cmd",
    "doctor": "doctor_cmd",
    "whoami": "doctor_cmd",
    "roles": "doctor_cmd",
    "init": "admin_cmd",
    "revoke": "revoke_cmd",
    "sweep": "revoke_cmd",
    "demo": "demo_cmd",
    "audit": "audit_cmd",
    "policy": "policy_cmd",
    "broker": "broker_cmd",
}
_registered: set[str] = set()


def _modules_for(argv: list[str]) -> set[str] | None:
    """The command modules this run needs: only its command's when argv starts with a known
    command; None (all of them) for the top-level help, completion, an unknown command (click's
    "did you mean" needs every name) and options before the command."""
    if not argv or os.environ.get("_JITCTL_COMPLETE"):
        return None
    module = COMMANDS.get(argv[0])
    return None if module is None else {module}


def _register(modules: set[str] | None = None) -> None:
    """Register ``modules`` (default: every command module) on the app, in COMMANDS' order.

    In-process callers may run several times: the app is rebuilt from scratch whenever a module
    is added, so the order stays the table's and nothing is registered twice."""
    wanted = set(COMMANDS.values()) if modules is None else modules
    if wanted <= _registered:
        return
    _registered.update(wanted)
    app.registered_commands.clear()
    app.registered_groups.clear()
    for name in dict.fromkeys(COMMANDS.values()):
        if name in _registered:
            # __import__, not importlib.import_module: `python -X importtime` sees only this
            __import__(f"jitctl.cli.{name}", fromlist=["register"]).register(app)
    _whole_summaries(app)
    from jitctl.cli.metavars import install

    install()


def _whole_summaries(group: typer.Typer) -> None:
    """Each command's summary in `--help` is its whole first sentence, wrapped: click would
    cut it to the width beside the longest command name and end it with "..."."""
    import inspect

    for info in group.registered_commands:
        if info.short_help is None and info.callback is not None:
            doc = info.help or inspect.getdoc(info.callback) or ""
            first = doc.split("\n\n")[0].replace("\n", " ").strip()
            info.short_help = first.split(". ")[0].rstrip(".")
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _whole_summaries(sub.typer_instance)


def _debug_requested(argv: list[str]) -> bool:
    ours = argv[: argv.index("--")] if "--" in argv else argv  # after --: exec's command's
    return "--debug" in ours or os.environ.get("JITCTL_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> int:
    from jitctl.sanitize import clean

    sys.stderr.write(f"jitctl: {clean(message)}\n")
    return code


def _list_roles(exc: Exception, env: Environment) -> None:
    """A missing ROLE argument: say which roles there are (within completion's time bound;
    nothing if the policy or broker cannot say)."""
    if getattr(getattr(exc, "param", None), "name", None) != "role":
        return
    from jitctl.completion import role_names
    from jitctl.sanitize import clean

    names = [name for name, _ in role_names(env, "")]
    if names:
        sys.stderr.write(f"jitctl: roles: {clean(', '.join(names))} (see `jitctl roles`)\n")


def _json_error(argv: list[str], env: Environment, exc: JitctlError) -> None:
    """With --json (before any `--`), a failed command still prints its one JSON document on
    stdout: the error, in the broker API's shape, unless it printed its own already."""
    import json

    head = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" not in head or env.json_emitted:
        return
    body = {"error": {"message": exc.message, "hint": exc.hint, "exit_code": int(exc.exit_code)}}
    env.out.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
    env.out.flush()


def run(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Run the CLI and return the exit code; every expected error becomes one line on stderr.

    ``env`` is built here once (or handed in by in-process tests) and reaches every command
    through click's context object (``jitctl.cli.session.current_env``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if env is None:
        from jitctl.cli.output import clock_warning, progress, warning
        from jitctl.context import Environment

        env = Environment(on_clock_skew=clock_warning, on_warning=warning, on_progress=progress)
    if env.service_factory is None:  # this host assembles the run (jitctl.wiring)
        from jitctl.wiring import choose_service

        env.service_factory = choose_service
    debug = _debug_requested(argv)
    _register(_modules_for(argv))
    if os.environ.get("_JITCTL_COMPLETE"):  # a completion script is asking for candidates
        from typer._completion_classes import completion_init

        completion_init()
    try:
        from jitctl.sanitize import check_argv

        check_argv(argv)  # undecodable bytes reach no command (nor sqlite, nor a log line)
        command = _with_global_options(typer.main.get_command(app))
        result = command(args=argv, prog_name="jitctl", standalone_mode=False, obj=env)
        return int(result or 0) if isinstance(result, int) else 0
    except JitctlError as exc:
        if debug:
            traceback.print_exc()
        _json_error(argv, env, exc)
        return _fail(str(exc), int(exc.exit_code))
    except typer.Exit as exc:
        if exc.exit_code == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into a silent Exit(130)
            return _fail("interrupted", int(ExitCode.INTERRUPTED))
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors from the parser: it prints them itself
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            _fail(exc.message, int(ExitCode.USAGE))
        _list_roles(exc, env)
        return int(getattr(exc, "exit_code", ExitCode.USAGE) or ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", int(ExitCode.INTERRUPTED))
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno in DISK_FULL:  # wherever it was writing: the machine's problem, not a bug
            return _fail(f"the disk is full: {exc}", int(ExitCode.UNAVAILABLE))
        return _unexpected(exc, debug)
    except Exception as exc:  # a bug: short message, traceback only with --debug
        return _unexpected(exc, debug)
    finally:
        env.close()  # the command's PagerDuty client


def _unexpected(exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    return _fail(
        f"unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
        int(ExitCode.ERROR),
    )


def main() -> None:
    sys.exit(run())
