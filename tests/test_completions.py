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


def bash_complete(*words: str) -> list[str]:
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
        env=clean_env(),
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
