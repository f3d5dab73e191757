"""`jitctl audit ...`: the local audit log and the team's central copy of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from jitctl.cli.output import JSON_OPTION, stdout

if TYPE_CHECKING:
    from jitctl.context import Environment

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

CSV_COLUMNS = ("ts", "event", "request_id", "actor", "person", "role", "prev", "hash")
# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...), +cmd|...,
# @SUM(...)); tab and CR too (OWASP "CSV injection"), and the full-width forms some
# spreadsheets accept. Such cells get a leading single quote: shown, never evaluated.
_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_DETAIL_KEYS = ("error", "reason", "why", "expires_at", "approval")
_DETAIL_MAX = 120


def _env() -> Environment:
    from jitctl.cli.session import current_env

    return current_env()


def _warn_unhashed(records: list[dict[str, Any]]) -> None:
    """The filters trust only what a record's hash covers: say when a shown record's hash
    does not cover it (edited in the central copy). Signatures are `audit verify`'s job."""
    from jitctl.audit.log import record_hash
    from jitctl.cli.output import warning

    bad = sum(1 for r in records if record_hash(r) != r.get("hash"))
    if bad:
        warning(
            f"{bad} of these records fail their hash check (edited): "
            "run `jitctl audit verify --remote`"
        )


@audit_app.command("log")
def log(
    request_id: str = typer.Option(None, "--request", help="Only this request's records."),
    since: str = typer.Option(
        None, "--since", help='Only newer records: a duration ("2h") or an RFC 3339 timestamp.'
    ),
    person: str = typer.Option(None, "--person", help="Only records of this person (email)."),
    local: bool = typer.Option(
        False, "--local", help="Read this machine's log even when a central sink is configured."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Audit records, oldest first: the team's central copy when configured, else the local log."""
    from jitctl.cli.output import emit_json

    records = _env().service.audit_records(
        since=since, request_id=request_id, person=person, local=local
    )
    _warn_unhashed(records)
    if json_out:
        emit_json(records)
        return
    _table(records)


def _table(records: list[dict[str, Any]]) -> None:
    from jitctl.cli.output import print_table, safe, stderr_console
    from jitctl.timeutil import parse_rfc3339

    if not records:
        stderr_console().print("no audit records")
        return
    rows = []
    for r in records:
        try:
            when = parse_rfc3339(str(r.get("ts"))).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            when = str(r.get("ts"))
        cells = [when, r.get("event"), r.get("person"), r.get("role"), r.get("request_id")]
        rows.append([*(safe(c if c is not None else "-") for c in cells), safe(_detail(r))])
    columns = ["time", "event", "person", "role", "request", "detail"]
    print_table(columns, rows, whole=("role", "request"), drop=("person", "time"))


def _detail(record: dict[str, Any]) -> str:
    text = next((str(record[k]) for k in _DETAIL_KEYS if record.get(k)), "")
    if record.get("event") in ("approved", "denied"):
        text = "; ".join(part for part in (_decision(record), text) if part)
    if record.get("sink"):
        text = f"{record['sink']}: {text}"
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


def _decision(record: dict[str, Any]) -> str:
    """Who decided, and every approver so far. The approver's own record is by its person;
    the requester's `observed` record carries what the store said (`stored_*`)."""
    by = record.get("stored_decided_by") or record.get("decided_by")
    if not by and not record.get("observed"):
        by = record.get("person")
    approvers = record.get("stored_approvers") or record.get("approvers") or []
    parts = [f"by {by}"] if by else []
    if isinstance(approvers, list) and approvers:
        parts.append("approvers: " + ", ".join(str(a) for a in approvers))
    if record.get("min_approvals"):
        parts.append(f"{record.get('approvals')}/{record['min_approvals']} approvals")
    return "; ".join(parts)


@audit_app.command("export")
def export(
    fmt: str = typer.Option(..., "--format", help="jsonl (one record per line) or csv."),
    since: str = typer.Option(
        None, "--since", help='Only newer records: a duration ("2h") or an RFC 3339 timestamp.'
    ),
    local: bool = typer.Option(
        False, "--local", help="Read this machine's log even when a central sink is configured."
    ),
) -> None:
    """Write audit records to stdout for a SIEM: the central copy when configured, else local."""
    import csv
    import json

    from jitctl.errors import UsageError

    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"--format {fmt!r} is not one of jsonl, csv")
    records = _env().service.audit_records(since=since, request_id=None, person=None, local=local)
    if fmt == "jsonl":
        for r in records:  # the exact hashing form plus hash: each line verifies on its own
            stdout().write(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n")
        return
    writer = csv.writer(stdout())
    writer.writerow([*CSV_COLUMNS, "details"])
    for r in records:
        rest = {k: v for k, v in r.items() if k not in CSV_COLUMNS}
        values = [r.get(k) for k in CSV_COLUMNS]
        details = json.dumps(rest, sort_keys=True, separators=(",", ":"))
        writer.writerow([csv_cell(v) for v in (*values, details)])


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell no spreadsheet evaluates (see _FORMULA_START)."""
    if isinstance(value, str) and value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


@audit_app.command("verify")
def verify(
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Also verify the central copy, and that it holds this log's records unchanged.",
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Check the local audit log's hash chain: exit 0 if intact, 6 naming the first bad line."""
    from jitctl.cli.output import emit_json, safe, stdout_console
    from jitctl.errors import AuditTampered

    doc = _env().service.audit_verify(remote=remote)
    if json_out:
        emit_json(doc)
    if doc["failure"] is not None:
        raise AuditTampered(doc["failure"])
    if not json_out:
        out = stdout_console()
        out.print(f"[green]✓[/] {safe(doc['path'])}: {doc['records']} records, hash chain intact")
        signed = ", every record signed by the audit key" if doc.get("signed") else ""
        for central in doc.get("remote", []):
            out.print(
                f"[green]✓[/] {safe(central['sink'])}: {central['records']} records in "
                f"{central['chains']} chains intact{signed}, this log's records all present "
                "and none after its last"
            )
        if doc.get("anchor_note"):  # a broker older than this client sends none
            out.print(f"[yellow]![/] {safe(doc['anchor_note'])}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
