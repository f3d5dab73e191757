"""Rendering helpers: JSON on stdout, human text on stderr, other people's text escaped."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from jitctl.sanitize import clean

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from jitctl.context import Environment

# Every command's --json (typer options are plain default values, safe to reuse). `request`
# and `wait` say "(no secrets)": their document describes credentials it does not contain.
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")
JSON_OPTION_NO_SECRETS = typer.Option(
    False, "--json", help="Print one JSON document on stdout (no secrets)."
)


def emit_json(document: Any) -> None:
    """Exactly one JSON document on stdout and nothing else there (the contract)."""
    out = _stream("out")
    out.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    out.flush()
    if (env := _session()) is not None:
        env.json_emitted = True  # an error after it adds no second document (cli.main)


def emit_json_array(items: Iterable[Any], batch: int = 500) -> None:
    """One JSON array on stdout, written ``batch`` items at a time (memory flat however many
    there are), in exactly ``emit_json``'s shape. An error before the first item leaves stdout
    empty (the error's own document goes there); one after it still closes the array."""
    from itertools import islice

    out = _stream("out")
    source = iter(items)
    first = True
    try:
        # One dumps per batch, not per item: json's indenting encoder is set up once a call.
        while chunk := list(islice(source, batch)):
            text = json.dumps(chunk, indent=2, sort_keys=True, default=str)
            out.write(("[\n" if first else ",\n") + text[2:-2])
            first = False
    finally:
        if not first or sys.exc_info()[0] is None:
            out.write("[]\n" if first else "\n]\n")
            out.flush()
            if (env := _session()) is not None:
                env.json_emitted = True


def safe(text: object) -> str:
    """Text from other people, made safe for a rich console: no escapes, no markup."""
    from rich.markup import escape

    return escape(clean(str(text)))


def _session() -> Environment | None:
    """The run's Environment (None outside a command, e.g. a helper called by a test)."""
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    env: Environment | None = ctx.find_root().obj if ctx is not None else None
    return env


def _stream(which: str) -> Any:
    env = _session()
    if env is not None:
        return env.out if which == "out" else env.err
    return sys.stdout if which == "out" else sys.stderr


def stdout() -> Any:
    """Where data goes: the run's stdout (a test's capture, or the process's)."""
    return _stream("out")


def interactive() -> bool:
    """Spinners, prompts and pickers only for a person at a terminal (not scripts, not -q);
    NO_COLOR turns off colour alone (colour())."""
    env = _session()
    if env is not None:
        return env.interactive
    return sys.stderr.isatty() and sys.stdout.isatty()


def stdout_console() -> Console:
    """The answer a command exists to give goes to stdout, so `| grep` and `$(...)` see it;
    --quiet never hides it. Colour only for a person at a terminal."""
    from rich.console import Console

    return Console(file=_stream("out"), highlight=False, no_color=not colour(), soft_wrap=True)


def colour() -> bool:
    """Colour only for a person at a terminal who has not asked for NO_COLOR."""
    env = _session()
    environ = env.environ if env is not None else os.environ
    return interactive() and not environ.get("NO_COLOR")


def stderr_console() -> Console:
    """Human messages go to stderr; --quiet silences them (errors still print, from main)."""
    from rich.console import Console

    env = _session()
    quiet = bool(env is not None and env.quiet)
    return Console(
        file=_stream("err"), highlight=False, no_color=not colour(), soft_wrap=True, quiet=quiet
    )


def local_time(value: datetime, now: datetime | None = None) -> str:
    """'07:00' today, else 'Sun 22 Nov 07:00', in the viewer's local time zone."""
    local = value.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%a %d %b %H:%M")


def relative(value: datetime, now: datetime) -> str:
    """'in 1h5m' / '3m ago' (whole minutes once past a minute)."""
    from datetime import timedelta

    from jitctl.timeutil import format_duration

    seconds = abs((value - now).total_seconds())
    seconds = round(seconds / 60) * 60 if seconds >= 60 else int(seconds)
    text = format_duration(timedelta(seconds=seconds)) if seconds else "0s"
    return f"in {text}" if value >= now else f"{text} ago"


def warning(text: str) -> None:
    """A problem the command carries on after (a central audit copy failed with ``required =
    false``, a shown record fails its hash): one plain line on stderr."""
    sys.stderr.write(f"jitctl: warning: {clean(text)}\n")
    sys.stderr.flush()


def progress(status: str, waited: float) -> None:
    """AWS is still working on something jitctl waits for: one line each time it asks."""
    env = _session()
    if env is None or not env.quiet:
        sys.stderr.write(f"jitctl: AWS says {clean(status)} after {waited:.0f}s; waiting\n")
        sys.stderr.flush()


def clock_warning(message: str) -> None:
    """Told once by the trusted clock when this machine's clock disagrees with AWS's."""
    stderr_console().print(f"[yellow]warning:[/] {safe(message)}")


def print_table(
    columns: list[str],
    rows: list[list[str]],
    *,
    whole: tuple[str, ...],
    drop: tuple[str, ...] = (),
    err: bool = False,
) -> None:
    """A table whose ``whole`` columns (ids, role names: what people copy and grep) never
    wrap. On a terminal too narrow for it, the ``drop`` columns go, in that order, and the
    rest fold; output that is not a terminal is never squeezed to a width at all."""
    from rich.console import Console
    from rich.measure import Measurement

    stream = _stream("err" if err else "out")
    tty = stream.isatty()
    console = Console(
        file=stream,
        highlight=False,
        no_color=not colour(),
        quiet=bool(err and (env := _session()) is not None and env.quiet),
        width=None if tty else 1_000_000,
    )
    shown = list(columns)
    table = _table(shown, rows, columns, whole)
    while tty and drop and Measurement.get(console, console.options, table).minimum > console.width:
        if not (left := [c for c in drop if c in shown]):
            break
        shown.remove(left[0])
        table = _table(shown, rows, columns, whole)
    needed = Measurement.get(console, console.options, table).minimum
    console.print(table, width=max(console.width, needed) if tty else None)


def _table(
    shown: list[str], rows: list[list[str]], columns: list[str], whole: tuple[str, ...]
) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in shown:
        cells = [row[columns.index(name)] for row in rows]
        widest = max([Text.from_markup(c).cell_len for c in cells] + [len(name)])
        keep = name in whole
        table.add_column(
            name,
            overflow="fold",
            no_wrap=keep,
            min_width=widest if keep else None,
            justify="right" if name == "#" else "left",
        )
    for row in rows:
        table.add_row(*(row[columns.index(name)] for name in shown))
    return table


def print_text_table(
    columns: list[str],
    blocks: Iterable[list[list[str]]],
    *,
    whole: tuple[str, ...],
    drop: tuple[str, ...] = (),
) -> None:
    """A table of plain text (other people's: cleaned here) that comes a block of rows at a
    time, so memory stays flat however many rows. On a terminal each block is a
    ``print_table``; elsewhere (a pipe, a file) rows are written as they come, without rich,
    columns two spaces apart and as wide as their widest cell so far."""
    from rich.cells import cell_len

    out = _stream("out")
    if out.isatty():
        for rows in blocks:
            print_table(columns, [[safe(c) for c in row] for row in rows], whole=whole, drop=drop)
        return
    widths = [len(name) for name in columns]
    for number, rows in enumerate(blocks):
        rows = [[clean(c) for c in row] for row in rows]
        lengths = [[cell_len(c) for c in row] for row in rows]
        widths = [max([w, *(row[i] for row in lengths)]) for i, w in enumerate(widths)]
        head = number == 0  # the header once, on top
        lines = ([columns] if head else []) + rows
        sizes = ([[len(c) for c in columns]] if head else []) + lengths
        out.write(
            "".join(_line(cells, size, widths) for cells, size in zip(lines, sizes, strict=True))
        )
    out.flush()


def _line(cells: list[str], sizes: list[int], widths: list[int]) -> str:
    padded = [c + " " * (w - s) for c, s, w in zip(cells, sizes, widths, strict=True)]
    return "  ".join(padded).rstrip(" ") + "\n"
