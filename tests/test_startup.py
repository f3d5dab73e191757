"""`jitctl --help` and `--version` stay fast: none of the heavy modules get imported."""

import json
import shutil
import subprocess
import sys

import pytest

from jitctl import __version__
from tests.conftest import clean_env

HEAVY = ("boto3", "botocore", "keyring", "pagerduty", "httpx2")

PROBE = f"""
import json, sys
from jitctl.cli.main import run
sys.stdout = open("/dev/null", "w")
code = run(sys.argv[1:])
sys.stdout = sys.__stdout__
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["request", "--help"], ["audit", "--help"]]
)
def test_help_and_version_import_nothing_heavy(args):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}


def test_installed_script_and_module_both_run():
    exe = shutil.which("jitctl")
    assert exe, "jitctl is not installed on PATH (pip install -e .)"
    for cmd in ([exe, "--version"], [sys.executable, "-m", "jitctl", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), check=True)
        assert out.stdout.strip() == f"jitctl {__version__}"


def test_unknown_command_is_a_usage_error_without_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "jitctl", "frobnicate"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert out.returncode == 2
    assert "No such command" in out.stderr and "Traceback" not in out.stderr


# `jitctl --help` prints help that typer rendered ahead of time (jitctl/cli/launch.py).
TYPER_HELP = "from jitctl.cli.main import main; main()"


def _help(cmd: list[str], columns: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(COLUMNS=columns)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)


@pytest.mark.parametrize("columns", ["80", "200", "60", "100"])
def test_the_stored_top_level_help_is_exactly_what_typer_prints(columns):
    typer_says = _help([sys.executable, "-c", TYPER_HELP, "--help"], columns).stdout
    assert typer_says.startswith("Usage: jitctl [OPTIONS] COMMAND")
    for cmd in (
        [shutil.which("jitctl"), "--help"],
        [sys.executable, "-m", "jitctl", "--help"],
        [sys.executable, "-m", "jitctl", "-h"],
    ):
        assert _help(cmd, columns).stdout == typer_says, (
            "jitctl/cli/help_text.py is stale: run scripts/gen-reference"
        )


@pytest.mark.parametrize("columns", ["80", "120", "200"])
def test_top_level_help_imports_no_typer(columns):
    out = _help([sys.executable, "-X", "importtime", "-m", "jitctl", "--help"], columns)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "jitctl.cli.help_text" in imported
    assert not {"typer", "jitctl.cli.main", "jitctl.context"} & imported
