"""Shell completions: the checked-in scripts are current, bash really completes, and the
wheel installs all three where the shells look for them."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "gen-completions"
SCRIPTS = {
    "bash": Path("bash/jitctl"),
    "zsh": Path("zsh/_jitctl"),
    "fish": Path("fish/jitctl.fish"),
}
INSTALLED = {
    "bash": "share/bash-completion/completions/jitctl",
    "zsh": "share/zsh/site-functions/_jitctl",
    "fish": "share/fish/vendor_completions.d/jitctl.fish",
}


def test_checked_in_scripts_match_the_generator(tmp_path):
    subprocess.run(
        [sys.executable, str(GENERATOR), "--output-dir", str(tmp_path)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    for relative in SCRIPTS.values():
        checked_in = ROOT / "completions" / relative
        assert checked_in.is_file(), (
            f"completions/{relative} is missing: run scripts/gen-completions"
        )
        assert checked_in.read_text() == (tmp_path / relative).read_text(), (
            f"completions/{relative} is out of date: run scripts/gen-completions"
        )
    check = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, env=clean_env()
    )
    assert check.returncode == 0, check.stderr


def test_generator_check_mode_notices_a_hand_edit(tmp_path):
    subprocess.run(
        [sys.executable, str(GENERATOR), "--output-dir", str(tmp_path)], check=True, env=clean_env()
    )
    (tmp_path / SCRIPTS["fish"]).write_text("# edited by hand\n")
    check = subprocess.run(
        [sys.executable, str(GENERATOR), "--output-dir", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert check.returncode == 1 and "run scripts/gen-completions" in check.stderr


def bash_complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for `words` (the last one is being completed), via the real script
    and the installed `jitctl` on PATH."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert shutil.which("jitctl"), "jitctl is not installed on PATH (pip install -e .)"
    script = ROOT / "completions" / SCRIPTS["bash"]
    code = (
        'source "$1"; shift\n'
        'COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))\n'
        '_jitctl_completion "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", code, "bash", str(script), *words],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # e.g. "Shell bash not supported." from jitctl
    return [line for line in out.stdout.splitlines() if line]


def test_bash_completes_commands():
    assert bash_complete("jitctl", "ap") == ["approve"]
    everything = bash_complete("jitctl", "")
    assert {"request", "approve", "deny", "list", "status", "audit"} <= set(everything)


def test_bash_completes_options():
    assert bash_complete("jitctl", "request", "--du") == ["--duration"]


@pytest.mark.parametrize(("shell", "check"), [("zsh", ["-n"]), ("fish", ["--no-execute"])])
def test_other_scripts_parse_when_the_shell_is_installed(shell, check):
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    out = subprocess.run(
        [exe, *check, str(ROOT / "completions" / SCRIPTS[shell])], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_zsh_script_is_an_autoloadable_completion_function():
    lines = (ROOT / "completions" / SCRIPTS["zsh"]).read_text().splitlines()
    assert lines[0] == "#compdef jitctl"  # compinit binds the file to jitctl by this line


def _can_build_without_isolation() -> bool:
    """Whether this environment's setuptools can make a wheel on its own (offline)."""
    try:
        version = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    # 77 reads `license` as an SPDX expression (pyproject's build-system floor); bdist_wheel
    # has been part of setuptools since 70.1.
    return version >= (77, 0)


@pytest.mark.slow
def test_wheel_installs_the_completions_and_builds_without_deprecations(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("jitctl", "completions"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    # -v shows the build backend's own output, where setuptools prints its deprecations.
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist")]
    if _can_build_without_isolation():
        cmd.append("--no-build-isolation")  # works offline
    out = subprocess.run(
        [*cmd, str(src)], capture_output=True, text=True, timeout=600, env=clean_env()
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is deprecated" not in out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("jitctl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "\nLicense-Expression: Apache-2.0\n" in zf.read(metadata).decode()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
        for shell, target in INSTALLED.items():
            matches = [n for n in names if n.endswith(".data/data/" + target)]
            assert len(matches) == 1, f"{target} not in the wheel: {names}"
            expected = (ROOT / "completions" / SCRIPTS[shell]).read_bytes()
            assert zf.read(matches[0]) == expected


# --- role names and request ids, through the real shells -----------------------------------

ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def requests_made(team):
    """alice on call: an issued prod-readonly grant; and a pending prod-admin request."""
    team.on_call(ALICE, 6)
    issued = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-1 lag", "--no-wait")
    pending = team.run(ALICE, "request", "prod-admin", "--reason", "INC-1 failover", "--no-wait")
    assert issued.returncode == 0 and pending.returncode == 0, issued.stderr + pending.stderr
    return issued.stdout.strip(), pending.stdout.strip()


def test_bash_completes_role_names_from_the_policy(team):
    env = team.env(ALICE)
    assert bash_complete("jitctl", "request", "", env=env) == ["prod-admin", "prod-readonly"]
    assert bash_complete("jitctl", "request", "prod-r", env=env) == ["prod-readonly"]
    assert bash_complete("jitctl", "exec", "prod-a", env=env) == ["prod-admin"]
    assert bash_complete("jitctl", "credential-process", "prod-r", env=env) == ["prod-readonly"]
    assert bash_complete("jitctl", "policy", "explain", "prod-a", env=env) == ["prod-admin"]
    assert bash_complete("jitctl", "console", "prod-r", env=env) == ["prod-readonly"]


def test_bash_completes_the_request_ids_each_command_acts_on(team, requests_made):
    issued, pending = requests_made
    bob, alice = team.env(BOB), team.env(ALICE)
    assert bash_complete("jitctl", "approve", "", env=bob) == [pending]
    assert bash_complete("jitctl", "deny", "r-", env=bob) == [pending]
    assert bash_complete("jitctl", "revoke", "", env=bob) == [issued]
    assert bash_complete("jitctl", "status", "", env=bob) == sorted([issued, pending])
    assert bash_complete("jitctl", "review", "", env=bob) == sorted([issued, pending])
    assert bash_complete("jitctl", "cancel", "", env=alice) == [pending]
    assert bash_complete("jitctl", "wait", "", env=alice) == [pending]
    assert bash_complete("jitctl", "cancel", "", env=bob) == []  # not bob's to cancel


def test_fish_completes_roles_and_ids_with_their_descriptions(team, requests_made):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    issued, pending = requests_made
    script = ROOT / "completions" / SCRIPTS["fish"]

    def complete(line: str) -> list[str]:
        out = subprocess.run(
            [fish, "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            env=team.env(BOB),
            timeout=60,
        )
        assert out.returncode == 0 and out.stderr == "", out.stderr
        return out.stdout.splitlines()

    assert complete("jitctl request prod-r") == ["prod-readonly"]  # no description here
    (line,) = complete("jitctl approve ")
    assert line == f"{pending}\tprod-admin pending {ALICE}: INC-1 failover"
    assert [ln.split("\t")[0] for ln in complete("jitctl revoke ")] == [issued]


def test_zsh_completes_through_its_script(team, requests_made):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    _, pending = requests_made
    # compsys is not running here: _arguments prints what it was handed (the candidates the
    # script's `eval` of jitctl's answer passes it); the script itself runs for real.
    code = (
        '_arguments() { print -rl -- "$@"; }\n'
        "compdef() { :; }\n"
        'source "$1"; shift\n'
        'words=("$@"); CURRENT=$#\n'
        "_jitctl_completion\n"
    )
    script = str(ROOT / "completions" / SCRIPTS["zsh"])

    def complete(*words: str) -> str:
        out = subprocess.run(
            [zsh, "-f", "-c", code, "zsh", script, *words],
            capture_output=True,
            text=True,
            env=team.env(BOB),
            timeout=60,
        )
        assert out.returncode == 0 and out.stderr == "", out.stderr
        return out.stdout

    assert complete("jitctl", "request", "prod-r") == '*: :(("prod-readonly"))\n'
    offered = complete("jitctl", "approve", "")
    assert offered.startswith(f'*: :(("{pending}":"prod-admin pending {ALICE}'), offered


def test_role_names_complete_without_importing_boto3(team):
    """<TAB> on a role reads the policy file only: no AWS SDK, no PagerDuty client."""
    import sys

    code = (  # at exit: the completion ends the process from inside the app
        "import atexit, sys\n"
        "heavy = {'boto3', 'botocore', 'keyring', 'pagerduty'}\n"
        "atexit.register(lambda: sys.stderr.write(repr(sorted(\n"
        "    {m.split('.')[0] for m in sys.modules} & heavy))))\n"
        "from jitctl.cli.main import run\n"
        "sys.exit(run())\n"
    )
    env = team.env(
        ALICE, _JITCTL_COMPLETE="complete_bash", COMP_WORDS="jitctl request prod", COMP_CWORD="2"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["prod-admin", "prod-readonly"]
    assert out.stderr == "[]"


def test_a_completion_that_cannot_reach_aws_offers_nothing_quickly(team, tmp_path):
    """A DynamoDB store behind an endpoint that accepts and never answers: no candidates, no
    error text in the prompt, and the shell gets its answer within a few seconds."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        team.use_store('[store]\nbackend = "dynamodb"\ntable = "jitctl-nowhere"\n')
        env = team.env(BOB, AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert bash_complete("jitctl", "approve", "", env=env) == []
        assert time.monotonic() - started < 10
        # A config that does not parse: nothing either, and no traceback.
        team.config.write_text("this is = = not toml\n")
        assert bash_complete("jitctl", "request", "", env=team.env(BOB)) == []
    finally:
        silent.close()
