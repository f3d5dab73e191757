"""The manual (docs/) and the README stay true: links and anchors resolve, every page is
reachable, shell blocks paste (one command a line) and the jitctl commands in them parse
against the CLI, the exit codes are the code's, and the README stays one page.

The walkthrough and the runbook run for real in tests/test_readme.py; the command reference is
tests/test_reference.py's."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))  # docs/pending/ is waiting to be folded in: not the manual
EVERY = [README, *PAGES, ROOT / "deploy" / "README.md"]
MAX_README_LINES = 250


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (a `#` there is a comment, not a heading)."""
    return re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^ *```{lang}\n(.*?)^ *```$", text, re.MULTILINE | re.DOTALL)


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(t) for t in re.findall(r"^#+ (.*)$", prose(read(path)), re.MULTILINE)}


def links(path: Path) -> list[tuple[Path, str]]:
    """Every relative link of ``path`` (outside code blocks): (target file, anchor or "")."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(read(path))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        found.append(((path.parent / file).resolve() if file else path, anchor))
    return found


def section(path: Path, title: str) -> str:
    """The part of ``path`` under the heading ``title``, up to the next heading of its level
    or above (lines in code blocks are never headings)."""
    out: list[str] = []
    level, fence = 0, False
    for line in read(path).splitlines(keepends=True):
        heading = None if fence else re.match(r"(#+) (.*)\n?$", line)
        if line.lstrip().startswith("```"):
            fence = not fence
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"no section {title!r} in {path.name}"
    return "".join(out)


@pytest.mark.parametrize("page", EVERY, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(page):
    for target, anchor in links(page):
        assert target.exists(), f"{page.name} links to {target}, which is not there"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.name}: no heading #{anchor} in {target.name}"


def test_every_page_is_linked_from_the_readme_or_the_index():
    linked = {target for target, _ in links(README) + links(DOCS / "README.md")}
    assert DOCS / "README.md" in linked  # the index itself, from the README
    assert [p.name for p in PAGES if p not in linked] == []


def test_the_readme_is_one_page():
    lines = read(README).splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    assert "<!-- command reference" not in read(README)  # the reference is docs/commands.md


def test_the_readme_keeps_the_test_command_and_the_identity_rule():
    (tests,) = blocks(section(README, "Tests"), "sh")
    assert tests.strip() == "./scripts/test"
    ci = read(ROOT / ".ci" / "run")
    assert "scripts/test" in ci  # the command the README names is the one CI runs
    rule = section(README, "Who you are")
    assert "sts:GetCallerIdentity" in rule and "[identities]" in rule
    assert (DOCS / "security.md", "") in links(README)
    assert (DOCS / "development.md", "") in links(README)


def dependency_names() -> set[str]:
    project = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]
    specs = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    return {re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower() for spec in specs}


def test_every_dependency_says_why():
    table = section(DOCS / "development.md", "Dependencies and why")
    named = " ".join(row.split("|")[1] for row in table.splitlines() if row.startswith("| "))
    listed = {name.lower() for name in re.findall(r"[A-Za-z0-9_.-]+", named)}
    assert sorted(dependency_names() - listed) == []


def shell_lines(page: Path) -> list[str]:
    """The logical lines of ``page``'s sh blocks: continuations joined."""
    lines = []
    for block in blocks(read(page), "sh"):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


@pytest.mark.parametrize("page", EVERY, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_blocks_hold_one_command_a_line(page):
    """Commands packed into columns (`jitctl list   jitctl grants`) run as one when pasted."""
    for block in blocks(read(page), "sh"):
        for line in block.splitlines():
            packed = re.search(r"\S {2,}(?![#\\ ])\S", line)
            assert not packed, f"{page.name}: more than one command on: {line!r}"


def jitctl_commands(page: Path) -> list[list[str]]:
    """The argv of every jitctl command in ``page``'s sh blocks (also inside `$(...)`)."""
    found = []
    for line in shell_lines(page):
        code = line.strip()
        inner = re.search(r"\$\((jitctl .*)\)", code)
        if inner:
            code = inner.group(1)
        if code.startswith("jitctl "):
            found.append(shlex.split(code, comments=True)[1:])
    return found


def parse(argv: list[str]) -> None:
    """Parse ``argv`` as jitctl would (click raises on an unknown command or option, or a
    missing argument), without running anything."""
    import typer

    from jitctl.cli.main import _register, _with_global_options, app

    _register()
    command = _with_global_options(typer.main.get_command(app))
    ctx = command.make_context("jitctl", list(argv), obj=SimpleNamespace(quiet=False))
    while hasattr(command, "commands"):
        _, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(command.name, rest, parent=ctx)


@pytest.mark.parametrize("page", EVERY, ids=lambda p: str(p.relative_to(ROOT)))
def test_jitctl_commands_in_shell_blocks_parse(page):
    for argv in jitctl_commands(page):
        try:
            parse(argv)
        except Exception as exc:  # click's usage errors, whatever their class
            pytest.fail(f"{page.name}: `jitctl {shlex.join(argv)}` does not parse: {exc}")


def test_the_parse_check_refuses_what_jitctl_refuses():
    parse(["request", "prod-readonly", "--reason", "x", "--quiet"])
    for wrong in (["requets", "x"], ["request", "r", "--no-such"], ["audit", "log", "--x"]):
        with pytest.raises(Exception):  # noqa: B017 - click's own error classes
            parse(wrong)


def test_the_exit_codes_are_the_code_s():
    from jitctl.errors import ExitCode

    table = section(DOCS / "runbooks.md", "Exit codes")
    rows = dict(re.findall(r"^\| (\d+) \| (.*) \|$", table, re.MULTILINE))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in ExitCode)
    assert "expired or missing AWS login" in rows["2"]


def test_the_readme_s_performance_is_the_last_run():
    rows = [ln for ln in section(README, "Performance").splitlines() if ln.startswith("| ")]
    assert len(rows) >= 8  # two tables: header, rule and rows each
    last_run = section(DOCS / "performance.md", "The last run")
    assert [ln for ln in rows if ln not in last_run] == []


def test_no_page_refers_outside_the_repository():
    for page in EVERY:
        assert "CONTRACT.md" not in read(page) and "../shared" not in read(page), page.name


def test_the_outside_interface_names_pages_of_the_manual():
    index = read(DOCS / "README.md")
    interface = index[index.index("**The outside interface**") :].split("\n\n")[0]
    titles = {re.match(r"# (.*)", read(p)).group(1) for p in PAGES}
    names = re.findall(r'"([^"]+)"', interface)
    assert names and [n for n in names if n not in titles] == []


def test_messages_name_pages_that_exist():
    """Hints in jitctl's own messages point at docs/ pages (the README no longer holds them)."""
    named = set()
    for source in (ROOT / "jitctl").rglob("*.py"):
        named |= set(re.findall(r"docs/[\w/-]+\.md", read(source)))
    assert named and [n for n in sorted(named) if not (ROOT / n).exists()] == []


def test_config_blocks_are_configs_jitctl_accepts():
    """Every TOML block of the manual is a config file: jitctl's own loader checks every key."""
    from jitctl.config.settings import load_config

    found = [(p, b) for p in EVERY for b in blocks(read(p), "toml")]
    assert len(found) >= 2  # the config file (docs/policy.md) and a client's (docs/broker.md)
    for page, block in found:
        if re.search(r"^\[(roles|groups|identities)[.\]]", block, re.M):
            tomllib.loads(block)  # a policy fragment: TOML, shown for its keys (not a config)
            continue
        try:
            load_config({"JITCTL_CONFIG_TOML": block})
        except Exception as exc:  # ConfigError, naming the bad key
            pytest.fail(f"{page.name}: a config block jitctl refuses: {exc}")


def test_the_broker_api_table_names_every_route():
    """docs/broker.md "HTTP API" lists every path the broker serves (jitctl.broker.handler)."""
    from jitctl.broker.handler import _ROUTES

    table = read(DOCS / "broker.md").split("## HTTP API", 1)[1].split("\n### ", 1)[0]
    for _method, pattern, _action in _ROUTES:
        last = pattern.pattern.rstrip("$").split("/")[-1]
        named = last if not last.startswith("(") else pattern.pattern.split("/")[-2]
        assert named in table, f"docs/broker.md HTTP API does not name {pattern.pattern}"
