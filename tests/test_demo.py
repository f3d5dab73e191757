"""`jitctl demo`: the installed command, run as a newcomer would, with nothing from the outside."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jitctl.demo.broker_story import DIRECT_ASSUME
from jitctl.demo.broker_story import ROLE_ARN as BROKER_ROLE_ARN
from jitctl.demo.gate import TARGET_TRUST_TEMPLATE, target_trust_policy
from jitctl.demo.stage import shell_quote
from jitctl.demo.story import Story
from jitctl.demo.team import POLICY, TRUST_POLICY_TEMPLATE, trust_policy
from tests.conftest import clean_env

REPO = Path(__file__).resolve().parent.parent
EXE = shutil.which("jitctl")


def newcomer_env(tmp_path: Path) -> dict[str, str]:
    """No AWS_*/JITCTL_* from outside; HOME, XDG dirs and TMPDIR inside tmp_path."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    return clean_env(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        TMPDIR=str(tmp),
        NO_COLOR="1",
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


@pytest.mark.slow
def test_the_story_plays_end_to_end(tmp_path):
    assert EXE, "jitctl is not installed (pip install -e .)"
    env = newcomer_env(tmp_path)
    kept = tmp_path / "kept"
    out = subprocess.run(
        [EXE, "demo", "--keep", str(kept)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    story = out.stdout
    assert "Traceback" not in out.stderr and "Traceback" not in story
    assert 'alice$ jitctl request prod-readonly --reason "INC-4211 checkout latency"' in story
    assert "fast-tracked: on call, PEP1234 level 1" in story
    assert "bob$ jitctl approve r-" in story
    assert "approved by bob@example.com" in story
    assert "arn:aws:sts::123456789012:assumed-role/prod-readonly/dave@example.com" in story
    assert "carol$ jitctl status r-" in story
    assert re.search(r"denied by\s+bob@example.com: read-only is enough to diagnose", story)
    assert story.count("hash chain intact") == 4
    assert_the_broker_chapter(story, kept)
    assert_the_incident_chapter(story, kept)
    assert "All 13 steps behaved as expected" in story
    assert_the_slack_chapter(story)
    assert_the_identity_center_step(story, kept)
    # --keep: the files stay, in the directory named; the real home was never touched.
    assert (kept / "config.toml").is_file() and (kept / "policies" / "team.toml").is_file()
    events = [
        json.loads(line)["event"]
        for line in (kept / "home" / "dave" / "audit.jsonl").read_text().splitlines()
    ]
    assert events == ["requested", "pending", "approved", "issued"]
    assert files_under(Path(env["HOME"])) == []
    assert files_under(Path(env["TMPDIR"])) == []


def assert_the_identity_center_step(story: str, kept: Path) -> None:
    """alice, on call, gets the demo's permission set through the broker: assigned, no keys."""
    step = story[story.index("# 13. IAM Identity Center: a permission set") :]
    assert "prod-sso: permission set ProdSupport assigned in account 210987654321" in step
    records = [
        json.loads(line) for line in (kept / "broker" / "audit.jsonl").read_text().splitlines()
    ]
    assigned = [r for r in records if r["event"] == "assigned"]
    assert [(r["person"], r["assignment"]) for r in assigned] == [("alice@example.com", "present")]


def assert_the_incident_chapter(story: str, kept: Path) -> None:
    """Paged approvers, carol fast-tracked by her incident, the notes, sweep cutting access."""
    chapter = story[story.index("# 10. an incident: paged, assigned, fast-tracked") :]
    assert re.search(r"PagerDuty PINC\d+ \[resolved\] jitctl: carol@example.com requests", chapter)
    assert 'carol$ jitctl request prod-admin --reason "roll back deploy 812" --no-wait' in chapter
    assert "fast-tracked: assigned incident PINC" in chapter
    assert "note: jitctl: carol@example.com was granted AWS role prod-admin until" in chapter
    assert re.search(r"bob\$ jitctl sweep\n.*revoked r-\w+: incident PINC\d+ resolved", chapter)
    assert "was revoked by pagerduty (reason: incident PINC" in chapter
    records = [
        json.loads(line) for line in (kept / "broker" / "audit.jsonl").read_text().splitlines()
    ]
    assert [r["actor"] for r in records if r["event"] == "revoked"] == ["pagerduty"]


def assert_the_broker_chapter(story: str, kept: Path) -> None:
    """The gate: a grant issued by the broker, alice's own AssumeRole refused, doctor's checks."""
    chapter = story[story.index("# 6. the broker: a gate nobody can skip") :]
    url = re.search(r"jitctl broker jitctl-demo listening on (http://127\.0\.0\.1:(\d+))", chapter)
    assert url, chapter
    assert f'url = "{url.group(1)}"\nserver_id = "jitctl-demo"' in chapter  # a client's config
    issued = chapter.index('alice$ jitctl request prod-readonly --reason "INC-4211 replica lag')
    assert "fast-tracked: on call, PEP1234 level 1" in chapter[issued:]
    assert (
        "AWS sees the broker-issued grant: "
        "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com" in chapter
    )
    # The command shown is the one run: boto3's AssumeRole with alice's own keys.
    shown = re.search(r"^alice\$ (python -c .*?)   # aws sts assume-role, in boto3$", chapter, re.M)
    assert shown, chapter
    assert shlex.split(shown.group(1)) == ["python", "-c", DIRECT_ASSUME, BROKER_ROLE_ARN]
    assert (
        "An error occurred (AccessDenied) when calling the AssumeRole operation: User: "
        "arn:aws:iam::123456789012:user/alice@example.com is not authorized to perform: "
        "sts:AssumeRole" in chapter
    )
    assert "broker: " + url.group(1) + ": server id jitctl-demo" in chapter
    assert (
        "alice@example.com (arn:aws:iam::123456789012:user/alice@example.com), as the broker"
        in (chapter)
    )
    # The broker, not alice's machine, recorded the grant; and it is stopped at the end.
    records = [
        json.loads(line) for line in (kept / "broker" / "audit.jsonl").read_text().splitlines()
    ]
    assert [(r["event"], r["person"]) for r in records][:3] == [  # then the incident chapter's
        ("requested", "alice@example.com"),
        ("auto_approved", "alice@example.com"),
        ("issued", "alice@example.com"),
    ]
    assert refused(int(url.group(2)))


def test_keep_refuses_a_directory_with_files(tmp_path):
    env = newcomer_env(tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    out = subprocess.run(
        [EXE, "demo", "--keep", str(busy)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "not an empty directory" in out.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


class Lines:
    """Lines of a pipe, read in a thread, so the test can wait for one with a deadline."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, prefix: str, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"ended before {prefix!r}: {self.seen}")
            self.seen.append(line)
            if line.startswith(prefix):
                return self.seen

    def rest(self, timeout: float = 30) -> list[str]:
        tail = []
        while (line := self._queue.get(timeout=timeout)) is not None:
            tail.append(line)
        return tail


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_serve_exports_an_environment_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    env = newcomer_env(tmp_path)
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)  # this test's own boto3 sees only what the demo printed
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    proc = subprocess.Popen(
        [EXE, "demo", "--serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        reader = Lines(proc.stdout)
        lines = reader.until("# ready")
        # issue 21 item 18: every persona's file (alice's too, to switch back), and the truth
        # about revocation without IAM enforcement
        sourced = [ln.split(": source ")[0].strip("# ") for ln in lines if ": source " in ln]
        assert sourced == [f"{n}@example.com" for n in ("alice", "bob", "carol", "dave")]
        assert any("does not enforce IAM" in ln and "jitctl revoke" in ln for ln in lines)
        exports = dict(
            shlex.split(line)[1].split("=", 1) for line in lines if line.startswith("export ")
        )
        assert exports["JITCTL_CONFIG"].startswith(env["TMPDIR"])
        workspace = Path(exports["JITCTL_CONFIG"]).parent
        # One OS account, one shell, several people: each persona's credential cache is its own.
        caches = {
            script.stem: re.search(r"^export JITCTL_CACHE_DIR=(.+)$", script.read_text(), re.M)[1]
            for script in (workspace / "env").glob("*.sh")
        }
        assert len(caches) >= 2 and len(set(caches.values())) == len(caches), caches
        assert exports["JITCTL_CACHE_DIR"] in caches.values()
        shell = {**env, **exports}
        who = subprocess.run(
            [EXE, "whoami", "--json"], env=shell, capture_output=True, text=True, timeout=60
        )
        assert who.returncode == 0, who.stderr
        doc = json.loads(who.stdout)
        assert doc["principal"] == "arn:aws:iam::123456789012:user/alice@example.com"
        assert [oc["escalation_policy"]["id"] for oc in doc["on_calls"]] == ["PEP1234"]

        import boto3

        def client(service):
            return boto3.client(
                service,
                endpoint_url=exports["AWS_ENDPOINT_URL"],
                region_name=exports["AWS_REGION"],
                aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            )

        me = client("sts").get_caller_identity()["Arn"]
        assert me == "arn:aws:iam::123456789012:user/alice@example.com"
        role = client("iam").get_role(RoleName="prod-readonly")["Role"]
        assert role["AssumeRolePolicyDocument"] == trust_policy("123456789012")
        # The team's broker runs alongside; the printed client config is all a client needs.
        broker = re.search(
            r"listens on (http://127\.0\.0\.1:(\d+)) \(server id jitctl-demo\)", "\n".join(lines)
        )
        assert broker, lines
        client = next(ln for ln in lines if ln.startswith("# Go through the broker: export "))
        client_config = shlex.split(client.split("export ", 1)[1])[0].split("=", 1)[1]
        assert Path(client_config).read_text() == (
            f'[broker]\nurl = "{broker.group(1)}"\nserver_id = "jitctl-demo"\n'
        )
        checked = subprocess.run(
            [EXE, "doctor"],
            env={**shell, "JITCTL_CONFIG": client_config},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "as the broker sees you" in checked.stdout + checked.stderr
        # Slack's stand-in: what the broker posts is shown; the printed command clicks as bob.
        asked = subprocess.run(
            [EXE, "request", "prod-admin", "--reason", "rehearse", "--no-wait"],
            env={**shell, "JITCTL_CONFIG": client_config},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asked.returncode == 0, asked.stderr
        rid = asked.stdout.strip()
        reader.until(f"  │ Request `{rid}`")
        clicker = next(ln for ln in lines if "-m jitctl.demo.slacksim approve" in ln)
        argv = shlex.split(clicker.lstrip("# ").replace("REQUEST_ID", rid))
        clicked = subprocess.run(argv, env=shell, capture_output=True, text=True, timeout=60)
        assert clicked.returncode == 0 and "HTTP 200" in clicked.stdout, clicked
        reader.until("  │ Approvals so far 1 of 2 (bob@example.com)")
        ports = [
            int(exports["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]),
            int(next(ln for ln in lines if "PagerDuty https://" in ln).rsplit(":", 1)[1]),
            int(broker.group(2)),
        ]
        assert not any(refused(port) for port in ports)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode in (0, 130)
        assert "Traceback" not in proc.stderr.read()
        assert all(refused(port) for port in ports)
        assert not workspace.exists()
        assert files_under(Path(env["HOME"])) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_the_demo_extra_it_says_what_to_install():
    code = (
        "import sys; sys.modules['moto'] = None\n"
        "from jitctl.cli.main import run\n"
        "sys.exit(run(['demo']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    # One line naming the command that installs the extra into this very Python (jitctl is on
    # no package index, so `pip install 'jitctl[demo]'` could not work).
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    install = f"{shlex.quote(sys.executable)} -m pip install 'moto[server]>=5.0'"
    assert out.stderr.startswith("jitctl: the demo needs moto's server (jitctl's demo extra)")
    assert f"run: {install}; from a clone of jitctl's repository ./try-jitctl" in out.stderr
    assert "jitctl[demo]" not in out.stderr


def test_importing_the_demo_package_pulls_in_nothing_heavy():
    code = (
        "import json, sys\n"
        "import jitctl.demo, jitctl.demo.pdsim, jitctl.demo.team, jitctl.demo.story\n"
        "import jitctl.demo.gate, jitctl.demo.broker_story\n"
        "import jitctl.cli.demo_cmd\n"
        "heavy = {'moto', 'boto3', 'botocore', 'cryptography', 'flask'}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_trust_policy_is_the_repository_template():
    template = json.loads((REPO / "policies" / "trust-policy-template.json").read_text())
    assert template == TRUST_POLICY_TEMPLATE
    principal = trust_policy("111122223333")["Statement"][0]["Principal"]["AWS"]
    assert principal == "arn:aws:iam::111122223333:root"
    assert TRUST_POLICY_TEMPLATE["Statement"][0]["Principal"]["AWS"].endswith("ACCOUNT_ID:root")


def test_the_broker_chapter_uses_the_deployment_trust_policy():
    template = json.loads((REPO / "deploy" / "target-role-trust-policy.json").read_text())
    assert template == TARGET_TRUST_TEMPLATE
    broker = "arn:aws:iam::123456789012:user/jitctl-broker"
    assert target_trust_policy(broker)["Statement"][0]["Principal"]["AWS"] == broker
    assert TARGET_TRUST_TEMPLATE["Statement"][0]["Principal"]["AWS"] == "BROKER_ROLE_ARN"


@pytest.mark.parametrize(
    ("arg", "typed"),
    [
        ("prod-readonly", "prod-readonly"),
        ("INC-4211 checkout latency", '"INC-4211 checkout latency"'),
        ('say "$HOME"', '"say \\"\\$HOME\\""'),
        ("", '""'),
    ],
)
def test_commands_are_shown_as_typed(arg, typed):
    assert shell_quote(arg) == typed


def test_a_step_that_misbehaves_is_named_and_stops_the_story():
    class Refusing:  # every jitctl command exits 3
        def run(self, name, *args):
            return subprocess.CompletedProcess(args, 3, "", "jitctl: no\n")

    lines: list[str] = []
    done, failure = Story(Refusing(), lines.append).play()
    assert done == 0
    assert (
        failure
        == "step 1 (the shared request table) failed: `alice$ jitctl init` exited 3, expected 0"
    )
    assert lines[-2:] == ["alice$ jitctl init", "jitctl: no"]


@pytest.mark.parametrize("text", [POLICY, (REPO / "policies" / "prod.toml").read_text()])
def test_a_role_says_break_glass_only_when_its_policy_allows_it(text):
    """The words and the policy agree: a description that promises break-glass changes needs
    the role's break_glass table (without it `request --break-glass` is refused)."""
    import tomllib

    for name, role in tomllib.loads(text)["roles"].items():
        says = "break-glass" in role.get("description", "").lower()
        assert says == ("break_glass" in role), name


def assert_the_slack_chapter(story: str) -> None:
    """Chapter 12: the message rendered, bob's signed click taken, the buttons gone."""
    chapter = story[story.index("# 12. approve from Slack") :]
    assert "alice$ jitctl request prod-admin --reason" in chapter
    assert chapter.count("[ Approve ]  [ Deny ]") == 2  # before and after bob's approval
    assert "/v1/slack/interactions -> HTTP 200" in chapter
    assert "Approvals so far 1 of 2 (bob@example.com)" in chapter
    assert "(no buttons)" in chapter and "Approved by carol@example.com" in chapter
    assert "Approved and issued by carol@example.com" in chapter
