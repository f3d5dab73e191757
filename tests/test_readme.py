"""The README is true: its quick start runs from a fresh clone, its walkthrough and the
manual's runbook (docs/runbooks.md) run against `jitctl demo --serve`, as written.

tests/test_docs.py checks every page's links, commands and tables; tests/test_reference.py the
command reference."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import clean_env
from tests.test_docs import DOCS, README, blocks, section

ROOT = Path(__file__).resolve().parent.parent


def fenced(text: str, lang: str) -> list[str]:
    return blocks(text, lang)


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
    commands = fenced(section(README, "Quick start"), "sh")[0]
    assert "./try-jitctl" in commands
    text = README.read_text(encoding="utf-8")
    assert "pip install 'jitctl[demo]'" not in text and 'pip install "jitctl[demo]"' not in text


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
    (script,) = fenced(section(DOCS / "runbooks.md", "A runbook"), "sh")
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
def test_the_runbook_rehearses_against_demo_serve(tmp_path):
    """The runbook in docs/runbooks.md, as written there, against `jitctl demo --serve` with the AWS CLI
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


# The README's walkthrough names a world directory and stands for the request id with an
# example; the test keeps its world under tmp_path and puts the real id in.
WORLD, EXAMPLE_ID = "/tmp/jitctl-demo", "r-k3m9x2p7"
ACTIVATE = "source .venv/bin/activate\n"


def walkthrough() -> tuple[str, list[str]]:
    """The README's walkthrough: the command that keeps the world up, then each terminal's."""
    world, *steps = fenced(section(README, "Walk through it: a requester and an approver"), "sh")
    return world.strip(), steps


def as_typed(block: str, world: Path, bindir: Path, request_id: str = EXAMPLE_ID) -> str:
    """``block`` as bash runs it here, stopping at the first failing command: the test's
    world directory, the installed jitctl's bin directory on PATH (what activating the
    checkout's .venv does) and the real request id; every other line as written."""
    if block.startswith(ACTIVATE):
        block = f'export PATH="{bindir}:$PATH"\n' + block[len(ACTIVATE) :]
    return "set -euo pipefail\n" + block.replace(WORLD, str(world)).replace(EXAMPLE_ID, request_id)


def bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_the_readme_walkthrough_runs_against_demo_serve(tmp_path):
    """dave requests, bob approves from his own shell, dave execs, revokes and reads the
    audit: each block of the README as written, against `jitctl demo --serve --keep`."""
    import signal

    from tests.test_demo import EXE, Lines, newcomer_env

    world_cmd, (dave, bob, dave_again) = walkthrough()
    assert world_cmd == f"./try-jitctl --serve --keep {WORLD}"  # try-jitctl runs `jitctl demo`
    world, bindir = tmp_path / "jitctl-demo", Path(EXE).parent
    env = newcomer_env(tmp_path)
    serve = subprocess.Popen(
        [EXE, "demo", "--serve", "--keep", str(world)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    waiting = None
    try:
        Lines(serve.stdout).until("# ready")
        waiting = subprocess.Popen(
            ["bash", "-c", as_typed(dave, world, bindir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        said = Lines(waiting.stderr).until("  request r-", timeout=120)
        request_id = re.search(r"request (r-\w+) is pending", said[-1]).group(1)
        approved = bash(as_typed(bob, world, bindir, request_id), env)
        assert approved.returncode == 0, approved.stdout + approved.stderr
        assert request_id in approved.stdout  # bob's `list --pending` shows it
        assert f"approved {request_id}" in approved.stderr
        assert waiting.wait(timeout=120) == 0, waiting.stderr.read()
        # The same terminal as dave's first block: its environment (the `source` lines) holds.
        shell = "".join(ln for ln in dave.splitlines(keepends=True) if ln.startswith("source "))
        done = bash(as_typed(shell + dave_again, world, bindir, request_id), env)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "arn:aws:sts::123456789012:assumed-role/prod-readonly/dave@example.com" in out
        assert f"reusing grant {request_id}" in out and f"revoked {request_id}" in out
        assert "reused" in done.stdout and "revoked" in done.stdout  # the audit log's rows
        assert "hash chain intact" in out
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
