"""`jitctl policy diff`: the access a policy change gives or takes, for a terminal, a pull
request comment (Markdown) or a tool (--json). The comparing is jitctl.policy.diff's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import typer

from jitctl.cli.output import JSON_OPTION

if TYPE_CHECKING:
    from jitctl.policy.diff import Change, PolicyDiff

FORMATS = ("text", "markdown")
POLICY_WIDE = "(all roles)"


def diff_cmd(
    base: str = typer.Argument(
        None,
        metavar="BASE",
        help="A git revision or a policy path; default HEAD.",
        show_default=False,
    ),
    head: str = typer.Argument(
        None,
        metavar="HEAD",
        help="A git revision or a policy path; default the working tree.",
        show_default=False,
    ),
    fmt: str = typer.Option(
        "text", "--format", metavar="FORMAT", help="text (a terminal) or markdown (a table)."
    ),
    fail_on_widen: bool = typer.Option(
        False, "--fail-on-widen", help="Exit 3 when any change widens access (a required check)."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Who gains or loses which access between two versions of the policy.

    BASE and HEAD are git revisions of the repository that holds the configured policy (the
    config's policy or $JITCTL_POLICY), or paths: an argument that exists on disk is a path.
    Needs no AWS credentials, PagerDuty token or store."""
    from jitctl.cli.output import warning
    from jitctl.cli.session import current_env
    from jitctl.errors import ExitCode, UsageError
    from jitctl.policy.diff import diff_policies
    from jitctl.policy.revisions import WORKING_TREE, read_version

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    env = current_env()
    configured = env.config.require_policy_path
    before = read_version(base or "HEAD", configured, warning)
    after = read_version(head, configured, warning)
    diff = diff_policies(before, after, base or "HEAD", head or WORKING_TREE)
    if json_out:
        from jitctl.cli.output import emit_json

        emit_json(diff.to_json())
    elif fmt == "markdown":
        env.out.write(markdown(diff))
        env.out.flush()
    else:
        _print_text(diff)
    if fail_on_widen and diff.widens:
        raise typer.Exit(int(ExitCode.DENIED))


# --- text -----------------------------------------------------------------------------------


def _print_text(diff: PolicyDiff) -> None:
    from jitctl.cli.output import stdout_console

    console = stdout_console()
    for line in text_lines(diff):
        console.print(line)


def text_lines(diff: PolicyDiff) -> list[str]:
    """Rich markup lines; every value from a policy file escaped (cli.output.safe)."""
    from jitctl.cli.output import safe

    lines = [f"[bold]{safe(diff.base)} → {safe(diff.head)}[/]"]
    for change in diff.changes:
        mark = "[red]widens[/]" if change.widens else "[green]does not widen[/]"
        lines.append(f"{safe(change.role or POLICY_WIDE)}  {safe(change.what)}  {mark}")
        lines += [f"  [green]+[/] {safe(item)}" for item in change.gained]
        lines += [f"  [red]-[/] {safe(item)}" for item in change.lost]
        if change.via:
            lines.append(f"  through {_joined(change.via, safe)}")
        if not (change.gained or change.lost):
            lines.append(f"  {_value(change.before, safe)} → {_value(change.after, safe)}")
    lines.append(_summary(diff))
    return lines


def _summary(diff: PolicyDiff) -> str:
    if not diff.changes:
        return "no change in access"
    n, wide = len(diff.changes), sum(c.widens for c in diff.changes)
    return f"{n} change{'s' * (n != 1)} in access; {wide} widen{'s' * (wide == 1)} it"


def _value(value: Any, esc: Callable[[Any], str]) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return _joined(value, esc) if value else "(none)"
    return esc(value)


def _joined(items: Iterable[Any], esc: Callable[[Any], str]) -> str:
    return ", ".join(esc(i) for i in items)


# --- markdown -------------------------------------------------------------------------------

# Characters Markdown (GitHub's included) may read as markup, tables or HTML: each gets a
# backslash, which CommonMark allows before any ASCII punctuation.
_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+!|~&:@=-])")


def md(text: object) -> str:
    """Text from a policy file as one Markdown table cell: no escapes, markup or line breaks."""
    from jitctl.sanitize import clean

    return _MARKUP.sub(r"\\\1", clean(str(text)))


def markdown(diff: PolicyDiff) -> str:
    """A heading, a verdict and one table row per change: what a pull-request comment needs."""
    head = f"### Access changes: {md(diff.base)} → {md(diff.head)}\n\n"
    if not diff.changes:
        return head + "No change in access.\n"
    verdict = "**This change widens access.**" if diff.widens else "This change widens no access."
    rows = [
        "| Role | Change | Before | After | Widens | Who or what |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows += [_row(c) for c in diff.changes]
    return head + verdict + "\n\n" + "\n".join(rows) + "\n"


def _row(change: Change) -> str:
    who = [f"\\+ {md(i)}" for i in change.gained] + [f"\\- {md(i)}" for i in change.lost]
    if change.via:
        who.append("through " + _joined(change.via, md))
    cells = [
        md(change.role or POLICY_WIDE),
        md(change.what),
        _value(change.before, md),
        _value(change.after, md),
        "**yes**" if change.widens else "no",
        "<br>".join(who),
    ]
    return "| " + " | ".join(cells) + " |"
