"""The command reference (docs/commands.md) is generated from --help; it must not drift from the CLI."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_reference_is_current():
    gen = runpy.run_path(str(ROOT / "scripts" / "gen-reference"))
    page = (ROOT / "docs" / "commands.md").read_text()
    assert page == gen["updated"](page), "docs/commands.md is stale: run scripts/gen-reference"


def test_reference_covers_every_command():
    gen = runpy.run_path(str(ROOT / "scripts" / "gen-reference"))
    names = {" ".join(p) for p in gen["commands"]()}
    for expected in (
        "request",
        "wait",
        "approve",
        "deny",
        "list",
        "status",
        "init",
        "audit verify",
        "exec",
        "credential-process",
        "revoke",
        "doctor",
        "whoami",
        "roles",
        "demo",
        "policy validate",
        "policy explain",
        "audit log",
        "audit export",
        "cancel",
    ):
        assert expected in names
