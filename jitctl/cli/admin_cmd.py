"""`jitctl init`: create the configured store's resources."""

from __future__ import annotations

import typer

from jitctl.cli.output import JSON_OPTION


def init(
    json_out: bool = JSON_OPTION,
) -> None:
    """Create the request store (the DynamoDB table and its indexes, or the SQLite file), the
    central audit table when [audit] table is set, and the broker's nonce table when
    [broker] nonce_table is set. Safe to rerun."""
    from jitctl.cli.output import emit_json, safe, stderr_console
    from jitctl.cli.session import current_env

    env = current_env()
    settings = env.config.store
    env.store.init()
    where = (
        settings.table if settings.backend == "dynamodb" else str(getattr(env.store, "path", ""))
    )
    sinks = list(env.audit.sinks)
    for sink in sinks:
        sink.init()  # the DynamoDB audit table (waits until ACTIVE); the S3 bucket is checked
    nonces = env.config.broker.nonce_table
    if nonces:
        from jitctl.broker.build import open_nonces

        open_nonces(env).init()
    if json_out:
        emit_json(
            {
                "backend": settings.backend,
                "location": where,
                "ready": True,
                "audit_sinks": [sink.name for sink in sinks],
                "nonce_table": nonces,
            }
        )
    else:
        out = stderr_console()
        if settings.backend == "dynamodb":  # the region and account: one table for the team
            where += " " + env.store.where()  # type: ignore[attr-defined]  # a DynamoStore
        out.print(f"[green]✓[/] {settings.backend} store ready: {safe(where)}")
        for sink in sinks:
            out.print(f"[green]✓[/] central audit sink ready: {safe(sink.name)}")
        if nonces:
            out.print(f"[green]✓[/] broker nonce table ready: {safe(nonces)}")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
