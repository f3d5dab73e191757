"""`jitctl --help` and `--version` stay fast: none of the heavy modules get imported."""

import json
import shutil
import subprocess
import sys

import pytest

from jitctl import __version__
from jitctl.cli.main import COMMANDS
from tests.conftest import clean_env

ALICE = "alice@example.com"

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


# A run imports only the module of the command it names (jitctl.cli.main.COMMANDS).
COMMAND_MODULES = {f"jitctl.cli.{module}" for module in COMMANDS.values()}


def _imported(stderr: str) -> set[str]:
    """Module names in `python -X importtime` output."""
    lines = (line for line in stderr.splitlines() if line.startswith("import time:"))
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


def test_an_on_call_request_imports_no_other_command_module(team):
    team.on_call(ALICE, 1)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jitctl"]
        + ["request", "prod-readonly", "--reason", "INC-1 startup"],
        env=team.env(ALICE),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fast-tracked: on call" in out.stderr
    assert _imported(out.stderr) & COMMAND_MODULES == {"jitctl.cli.request_cmd"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_is_reachable_alone(command):
    out = _help([sys.executable, "-X", "importtime", "-m", "jitctl", command, "--help"], "80")
    assert out.stdout.startswith(f"Usage: jitctl {command} ")
    own = f"jitctl.cli.{COMMANDS[command]}"
    # exec_cmd shares request_cmd's option parsing and delivery
    assert own in _imported(out.stderr)
    assert _imported(out.stderr) & COMMAND_MODULES <= {own, "jitctl.cli.request_cmd"}


LISTED = """
import json, typer.main
from jitctl.cli.main import _register, app
_register()
print(json.dumps(typer.main.get_command(app).list_commands(None)))
"""


def test_the_table_lists_every_command_in_help_order():
    out = subprocess.run(
        [sys.executable, "-c", LISTED], capture_output=True, text=True, env=clean_env(), check=True
    )
    assert json.loads(out.stdout) == list(COMMANDS)


@pytest.mark.parametrize(
    ("typo", "says"),
    [
        ("nosuchcmd", "No such command 'nosuchcmd'."),
        ("reqest", "No such command 'reqest'. Did you mean 'request'?"),
        ("grant", "Did you mean 'grants'?"),
    ],
)
def test_an_unknown_command_still_gets_click_s_suggestion(typo, says):
    out = subprocess.run(
        [sys.executable, "-m", "jitctl", typo], capture_output=True, text=True, env=clean_env()
    )
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("options", [["--debug"], ["-q"], ["--quiet", "--debug"]])
def test_options_before_the_command_still_reach_it(options):
    out = _help([sys.executable, "-m", "jitctl", *options, "grants", "--help"], "80")
    assert out.stdout.startswith("Usage: jitctl grants [OPTIONS]")


SEQUENCE = """
import io, sys
from jitctl.cli.main import run
for argv in (["request", "--help"], ["audit", "--help"], ["--help"]):
    sys.stdout = io.StringIO()
    run(argv)
    text, sys.stdout = sys.stdout.getvalue(), sys.__stdout__
print(text, end="")
"""


def test_running_again_in_one_process_keeps_the_help_order():
    """In-process callers run several commands: the app is rebuilt in the table's order."""
    again = _help([sys.executable, "-c", SEQUENCE], "80").stdout
    assert again == _help([sys.executable, "-c", TYPER_HELP, "--help"], "80").stdout
