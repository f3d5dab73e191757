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
    """The README's section under the heading ``title``, up to the next heading of its level
    or above (lines inside fenced code blocks are never headings)."""
    lines = README.splitlines(keepends=True)
    out: list[str] = []
    level = 0
    fence = False
    for line in lines:
        heading = re.match(r"(#+) (.*)\n?$", line) if not fence else None
        if line.startswith("```"):
            fence = not fence
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"no section {title!r} in README.md"
    return "".join(out)


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


def runbook() -> str:
    (script,) = fenced(section("A runbook"), "sh")
    return script


def test_the_runbook_checks_every_step():
    script = runbook()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in script  # a failed step stops it, with that step's code
    assert "|| exit $?" not in script  # set -e does that; no step is left unchecked


# In alice's shell, after a session of her own: the persona's file must clear it (exit 9 if
# it does not), then the approver approves.
SWITCH = (
    'export AWS_SESSION_TOKEN=stale AWS_PROFILE=jit-prod-admin; source "$1"; '
    'if [ -n "${AWS_SESSION_TOKEN+x}${AWS_PROFILE+x}" ]; then exit 9; fi; '
    'jitctl approve "$2" --yes --reason "runbook rehearsal"'
)


def served_shells(lines: list[str], env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """From `demo --serve`'s output: alice's shell environment, and each persona's file."""
    import shlex

    exports = dict(ln.split(" ", 1)[1].split("=", 1) for ln in lines if ln.startswith("export "))
    alice = {**env, **{k: shlex.split(v)[0] if v else v for k, v in exports.items()}}
    persona = {
        ln.split("@", 1)[0].strip("# "): shlex.split(ln.split("source ", 1)[1])[0]
        for ln in lines
        if ": source " in ln
    }
    return alice, persona


def rehearse(script: Path, alice: dict[str, str], persona: dict[str, str]) -> tuple[int, list[str]]:
    """Run the runbook as alice; bob and carol approve its write step. (exit code, stdout)."""
    from tests.test_demo import Lines

    run = subprocess.Popen(
        ["bash", str(script)],
        env={**alice, "INCIDENT": "INC-4211"},
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        out = Lines(run.stdout)
        waiting = out.until("waiting for approval of r-", timeout=180)
        request_id = re.search(r"approval of (r-\w+)", waiting[-1]).group(1)
        for name in ("bob", "carol"):
            approve = subprocess.run(
                ["bash", "-c", SWITCH, "bash", persona[name], request_id],
                env=alice,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert approve.returncode == 0, f"{name}: {approve.stdout}{approve.stderr}"
        lines = waiting + out.rest(timeout=180)
        return run.wait(timeout=60), lines
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def request_status(alice: dict[str, str], request_id: str) -> dict:
    import json

    from tests.test_demo import EXE

    out = subprocess.run(
        [EXE, "status", request_id, "--json"], env=alice, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_the_readme_runbook_rehearses_against_demo_serve(tmp_path):
    """The README's runbook, as written there, against `jitctl demo --serve` with the AWS CLI
    v1 from PyPI: alice runs it; bob and carol approve from their environment files. Then,
    with the replica gone, the failover step fails and so does the runbook."""
    import signal

    import boto3

    from tests.test_demo import EXE, Lines, newcomer_env

    assert shutil.which("aws"), "the AWS CLI is not installed (it is in the test extras)"
    env = newcomer_env(tmp_path)
    serve = subprocess.Popen(
        [EXE, "demo", "--serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        alice, persona = served_shells(Lines(serve.stdout).until("# ready"), env)
        script = tmp_path / "runbook.sh"
        script.write_text(runbook())
        code, lines = rehearse(script, alice, persona)
        assert code == 0, "\n".join(lines)
        assert any('"DBInstanceIdentifier": "orders-primary"' in ln for ln in lines), lines
        assert any('"DBClusterIdentifier": "orders"' in ln for ln in lines), lines
        request_id = re.search(r"failover done; (r-\w+) revoked", lines[-1]).group(1)
        done = request_status(alice, request_id)
        assert done["status"] == "revoked"
        assert sorted(done["approvers"]) == ["bob@example.com", "carol@example.com"]

        rds = boto3.client(
            "rds",
            endpoint_url=alice["AWS_ENDPOINT_URL"],
            region_name=alice["AWS_REGION"],
            aws_access_key_id=alice["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=alice["AWS_SECRET_ACCESS_KEY"],
        )
        rds.delete_db_instance(DBInstanceIdentifier="orders-replica", SkipFinalSnapshot=True)
        code, lines = rehearse(script, alice, persona)
        assert code != 0, "\n".join(lines)  # RDS refused the failover: the runbook stops there
        assert not any(ln.startswith("failover done") for ln in lines), lines
        failed = re.search(r"approval of (r-\w+)", "\n".join(lines)).group(1)
        assert request_status(alice, failed)["status"] == "issued"  # not revoked: it stopped
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
