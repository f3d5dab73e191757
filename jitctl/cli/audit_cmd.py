"""`jitctl audit ...`: the local audit log and the team's central copy of it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, islice
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
_BLOCK = 1000  # table rows rendered at once


def _env() -> Environment:
    from jitctl.cli.session import current_env

    return current_env()


class _HashCount:
    """Counts the records passing through that fail their hash check. The filters trust only
    what a record's hash covers: the command says so when a shown record's hash does not
    cover it (edited in the central copy). Signatures are `audit verify`'s job."""

    def __init__(self) -> None:
        self.bad = 0

    def passing(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        from jitctl.audit.log import record_hash

        for record in records:
            if record_hash(record) != record.get("hash"):
                self.bad += 1
            yield record

    def warn(self) -> None:
        from jitctl.cli.output import warning

        if self.bad:
            warning(
                f"{self.bad} of these records fail their hash check (edited): "
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
    from jitctl.cli.output import emit_json_array

    records = _env().service.audit_records(
        since=since, request_id=request_id, person=person, local=local
    )
    hashes = _HashCount()
    if json_out:
        emit_json_array(hashes.passing(records))
    else:
        _table(hashes.passing(records))
    hashes.warn()


def _table(records: Iterable[dict[str, Any]]) -> None:
    """Printed a block of rows at a time: memory stays flat however long the log is."""
    from jitctl.cli.output import print_text_table, stderr_console

    blocks = _blocks((_row(r) for r in records), _BLOCK)
    first = next(blocks, None)
    if first is None:
        stderr_console().print("no audit records")
        return
    columns = ["time", "event", "person", "role", "request", "detail"]
    print_text_table(
        columns, chain([first], blocks), whole=("role", "request"), drop=("person", "time")
    )


def _blocks(rows: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    while block := list(islice(rows, size)):
        yield block


def _row(r: dict[str, Any]) -> list[str]:
    """The record's cells as plain text (print_text_table cleans and escapes them)."""
    cells = [
        _when(r.get("ts")),
        r.get("event"),
        r.get("person"),
        r.get("role"),
        r.get("request_id"),
    ]
    return [*(str(c) if c is not None else "-" for c in cells), _detail(r)]


def _when(ts: Any) -> str:
    from jitctl.timeutil import parse_rfc3339

    try:
        return parse_rfc3339(str(ts)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(ts)


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
    out = stdout()
    if fmt == "jsonl":
        for r in records:  # the exact hashing form plus hash: each line verifies on its own
            out.write(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n")
        return
    writer = csv.writer(out)
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
