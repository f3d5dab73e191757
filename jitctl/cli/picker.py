"""Choosing a request on a terminal when the command was given no REQUEST_ID: `approve`,
`deny`, `cancel`, `wait` and `revoke` show the requests it may act on and ask which one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from jitctl.cli.output import interactive, print_table, relative, safe, stderr_console

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.lifecycle.contract import AccessService
    from jitctl.models import AccessRequest

# What each command may act on, said when there is nothing, and where else to look.
CANDIDATES: dict[str, tuple[Callable[[AccessService], list[AccessRequest]], str]] = {
    "approve": (lambda s: s.decidable(), "no pending requests you may approve"),
    "deny": (lambda s: s.decidable(), "no pending requests you may deny"),
    "cancel": (
        lambda s: s.list(pending_only=True, mine=True, role=None, limit=100),
        "you have no pending requests to cancel",
    ),
    "wait": (
        lambda s: [
            r
            for r in s.list(pending_only=False, mine=True, role=None, limit=100)
            if r.status in ("pending", "approved")
        ],
        "you have no pending or approved requests to wait for",
    ),
    "revoke": (lambda s: s.grants(), "you have no live grants to revoke"),
}


def pick(env: Environment, verb: str) -> str:
    """The request id a person picks (by number or id) among what ``verb`` may act on;
    asked again after a choice that is not one of them. Scripts get a usage error."""
    from jitctl.errors import UsageError

    if not (env.inp.isatty() and interactive()):
        raise UsageError("which request? pass REQUEST_ID", "see `jitctl list`")
    fetch, none = CANDIDATES[verb]
    # newest first, the order of `jitctl list`; the numbers are the rows of the one table shown
    reqs = sorted(fetch(env.service), key=lambda r: r.created_at, reverse=True)
    if not reqs:
        raise UsageError(none, "see `jitctl list`")
    _table(reqs, env.clock.now())
    choices = {str(i): r.request_id for i, r in enumerate(reqs, 1)}
    ids = set(choices.values())
    while True:
        answer: str = typer.prompt(f"{verb} which one (number or id)", err=True).strip()
        chosen = choices.get(answer, answer)
        if chosen in ids:
            return chosen
        stderr_console().print(
            f"[yellow]{safe(answer)!r} is not one of these:[/] a number from 1 to {len(reqs)}, "
            "or an id shown (Ctrl-C stops)"
        )


def _table(reqs: list[AccessRequest], now: datetime) -> None:
    rows = [
        [str(i), *(safe(v) for v in (r.request_id, r.role, r.requester))]
        + [relative(r.created_at, now).replace(" ago", ""), safe(r.reason)]
        for i, r in enumerate(reqs, 1)
    ]
    columns = ["#", "ID", "ROLE", "REQUESTER", "AGE", "REASON"]
    print_table(columns, rows, whole=("#", "ID", "ROLE"), drop=("AGE", "REQUESTER"), err=True)
