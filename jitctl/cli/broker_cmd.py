"""`jitctl broker ...`: run the broker, check the gate."""

from __future__ import annotations

import typer

broker_app = typer.Typer(
    help="The broker: jitctl as a gate that requesters cannot skip.", no_args_is_help=True
)


@broker_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free one)."),
) -> None:
    """Run the broker as an HTTP server (put TLS in front of it unless it listens on loopback)."""
    from jitctl.broker import wsgi
    from jitctl.broker.build import build_broker
    from jitctl.cli.output import stderr_console
    from jitctl.cli.session import current_env

    broker = build_broker(current_env())

    def ready(url: str) -> None:
        stderr_console().print(f"jitctl broker {broker.proof.server_id} listening on {url}")

    try:
        wsgi.serve(broker, host=host, port=port, on_ready=ready)
    except OSError as exc:
        from jitctl.errors import UsageError

        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _register_check() -> None:
    from jitctl.cli.broker_check_cmd import check

    broker_app.command("check")(check)


_register_check()


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
