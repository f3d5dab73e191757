"""The README is true: its quick start runs from a fresh clone, and it is its own reference."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import clean_env

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's section under the heading ``title`` (up to the next heading of its level)."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", README, re.MULTILINE)
    assert match, f"no section {title!r} in README.md"
    level = len(match.group(1))
    rest = README[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_readme_refers_to_nothing_outside_the_repository():
    assert "CONTRACT.md" not in README and "../shared" not in README
    assert "contract that runbooks rely on" not in README
    interface = README[README.index("**The outside interface**") :].split("\n\n")[0]
    for name in re.findall(r'"([^"]+)"', interface):
        section(name)  # every section it names is there
    for target in re.findall(r"\]\((?!https?://|#)([^)]+)\)", README):
        assert (ROOT / target).exists(), f"README links to {target}, not in the repository"


def tracked_copy(dest: Path) -> Path:
    """What a fresh clone holds: the files git tracks, as they are in this checkout."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_quick_start_is_the_script():
    commands = fenced(section("Quick start"), "sh")[0]
    assert "./try-jitctl" in commands
    assert "pip install 'jitctl[demo]'" not in README and 'pip install "jitctl[demo]"' not in README


@pytest.mark.slow
def test_try_jitctl_works_from_a_fresh_clone(tmp_path):
    clone = tracked_copy(tmp_path / "jitctl")
    assert not (clone / ".venv").exists()
    env = clean_env(NO_COLOR="1")  # the real HOME: pip's cache makes the install quick
    env.pop("VIRTUAL_ENV", None)
    # --help: the demo itself is tests/test_demo.py's; here, every step of the script before it.
    out = subprocess.run(
        [str(clone / "try-jitctl"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Usage: jitctl demo" in out.stdout
    python = clone / ".venv" / "bin" / "python"
    check = "import moto.server, jitctl, pathlib; print(pathlib.Path(jitctl.__file__).parent)"
    where = subprocess.run(
        [str(python), "-I", "-c", check], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert where.returncode == 0, where.stderr  # the demo extra is installed (-I: not the cwd)
    assert Path(where.stdout.strip()) == clone / "jitctl"  # editable: this clone's code
