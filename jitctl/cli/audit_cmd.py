"""`jitctl audit ...`: the local audit log."""

from __future__ import annotations

import typer

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Check the local audit log's hash chain: exit 0 if intact, 6 naming the first bad line."""
    from jitctl.audit import verify as verify_log
    from jitctl.cli.output import emit_json, safe, stderr_console
    from jitctl.config import load_config
    from jitctl.errors import AuditTampered

    path = load_config().audit_path
    result = verify_log(path)
    if json_out:
        emit_json(
            {
                "path": str(path),
                "ok": result.ok,
                "records": result.records,
                "first_bad_line": result.first_bad_line,
                "problem": result.problem,
            }
        )
    if not result.ok:
        raise AuditTampered(f"{path}:{result.first_bad_line}: {result.problem}")
    if not json_out:
        stderr_console().print(
            f"[green]✓[/] {safe(path)}: {result.records} records, hash chain intact"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
