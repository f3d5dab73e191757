"""`jitctl demo`: the story end to end against a local AWS endpoint and a PagerDuty simulator."""

from __future__ import annotations

from pathlib import Path

import typer

EXTRA_MISSING = "the demo needs the demo extra: pip install 'jitctl[demo]'"


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

        raise UsageError(EXTRA_MISSING) from None
    from jitctl.demo import run

    code = run(serve=serve, keep=keep)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
