"""`jitctl demo`: the story end to end against a local AWS endpoint and a PagerDuty simulator."""

from __future__ import annotations

from pathlib import Path

import typer


def _extra_missing() -> tuple[str, str]:
    """What is missing and the command that installs it into the Python running jitctl (the
    requirement as pyproject's demo extra states it; jitctl is on no package index)."""
    import importlib.metadata
    import shlex
    import sys

    try:
        wanted = [
            r.split(";")[0].strip()
            for r in importlib.metadata.requires("jitctl") or []
            if 'extra == "demo"' in r
        ]
    except importlib.metadata.PackageNotFoundError:
        wanted = []
    install = shlex.join([sys.executable, "-m", "pip", "install", *(wanted or ["moto[server]"])])
    return (
        "the demo needs moto's server (jitctl's demo extra), which is not installed",
        f"run: {install}; from a clone of jitctl's repository ./try-jitctl does it all",
    )


def demo(
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Keep the endpoints up and print the environment to export, until Ctrl-C.",
    ),
    keep: Path = typer.Option(
        None,
        "--keep",
        metavar="DIR",
        help="Put the demo's files in DIR (new or empty) and keep them afterwards.",
    ),
) -> None:
    """Try jitctl with no AWS or PagerDuty account: local endpoints, a small team, the story."""
    try:
        import moto.server  # noqa: F401  (the demo extra: moto's server and its Flask app)
    except ImportError:
        from jitctl.errors import UsageError

        raise UsageError(*_extra_missing()) from None
    from jitctl.demo import run

    code = run(serve=serve, keep=keep)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
