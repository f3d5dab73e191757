"""The console script's first step: `jitctl --help` from text rendered ahead of time.

`jitctl --help` is the command people (and completion helpers) run most often before any
other; typer alone costs more to import than the budget for it (0.3x of `import boto3`). The
top-level help is rendered by typer when the reference is generated (scripts/gen-reference
writes ``jitctl/cli/help_text.py``; tests/test_startup.py checks it equals typer's output), so
here it is printed with nothing imported. Everything else goes to ``jitctl.cli.main``, in a
process set up for a short life (``jitctl.cli.process``).
"""

from __future__ import annotations

import os
import sys

# click wraps help at min(terminal width, max_content_width 120) - 2 columns: 80 (the width
# of anything that is not a terminal) and every width from 120 up are stored; others render.
_STORED_WIDTH = 80
_WIDE = 120


def _columns() -> int:
    """The terminal width as ``shutil.get_terminal_size`` (which click uses) reports it."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            # sys.__stdout__ may be None: that AttributeError is caught below
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or _STORED_WIDTH


def stored_help(argv: list[str]) -> str | None:
    """The pre-rendered help when ``argv`` asks for exactly the top-level help, else None."""
    if argv not in (["--help"], ["-h"]) or os.environ.get("_JITCTL_COMPLETE"):
        return None
    columns = _columns()
    if columns == _STORED_WIDTH:
        from jitctl.cli.help_text import TOP_HELP_80

        return TOP_HELP_80
    if columns >= _WIDE:
        from jitctl.cli.help_text import TOP_HELP_WIDE

        return TOP_HELP_WIDE
    return None  # any other width: typer wraps it


def main() -> None:
    text = stored_help(sys.argv[1:])
    if text is None:
        from jitctl.cli.process import exit_now, guard_output, tune_collector

        tune_collector()
        guard_output()
        from jitctl.cli.main import run

        exit_now(run())
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `jitctl --help | head`: not an error; keep exit's flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
