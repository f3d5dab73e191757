"""The demo's story, played with the real `jitctl` commands, one process per person and step.

Each command is printed as the person would type it (``alice$ jitctl request ...``), then run
(``python -m jitctl ...`` with that person's environment) and its output shown. Every step
checks that jitctl behaved as the story says; the first that does not stops the story.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack

from jitctl.demo.failure import StepFailed
from jitctl.demo.team import ESCALATION_POLICY, PEOPLE, DemoTeam, email

INCIDENT = "INC-4211"
CONSUMER = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
_BARE = re.compile(r"^[A-Za-z0-9@%+=:,./_-]+$")


def shell_quote(arg: str) -> str:
    """How a person would type ``arg`` in a shell: bare when safe, else in double quotes."""
    return arg if _BARE.match(arg) else '"' + re.sub(r'([\\"$`])', r"\\\1", arg) + '"'


class Story:
    def __init__(self, team: DemoTeam, write: Callable[[str], None]) -> None:
        self.team = team
        self.write = write
        self.cleanup = ExitStack()  # what a step left running (the broker): ended after the story

    # -- telling ---------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            self.write(f"# {line}".rstrip())

    def prompt(self, name: str, argv: Sequence[str], note: str = "") -> None:
        self.write(f"{name}$ {' '.join(shell_quote(a) for a in argv)}{note}")

    def output(self, done: subprocess.CompletedProcess[str]) -> None:
        for stream in (done.stderr, done.stdout):  # jitctl talks on stderr, data on stdout
            for line in (stream or "").rstrip("\n").splitlines():
                self.write(line)

    # -- doing -----------------------------------------------------------------------------
    def jitctl(
        self,
        name: str,
        *args: str,
        expect: int = 0,
        shows: Iterable[str] = (),
        broker: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``jitctl ARGS`` as ``name``, shown and checked; ``broker``: as the broker's client."""
        self.prompt(name, ["jitctl", *args])
        done = self.team.run(name, *args, broker=True) if broker else self.team.run(name, *args)
        self.output(done)
        check(done, f"{name}$ jitctl {' '.join(map(shell_quote, args))}", expect, shows)
        return done

    def shown(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        run: Sequence[str] | None = None,
        note: str = "",
        expect: int = 0,
        shows: Iterable[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` shown as ``name`` types it, run (as ``run``, if given) with ``env``, checked."""
        self.prompt(name, argv, note)
        command = run or self.team.command(*argv[1:])  # argv is `jitctl ...` unless run says
        done = subprocess.run(
            command,
            env=env,
            cwd=self.team.root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        self.output(done)
        check(done, f"{name}$ {' '.join(map(shell_quote, argv))}", expect, shows)
        return done

    def quietly(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A helper call the story does not show (e.g. polling for a request id)."""
        return self.team.run(name, *args)

    # -- the story -------------------------------------------------------------------------
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        from jitctl.demo.broker_story import BrokerChapter
        from jitctl.demo.identity_center import story_step as sso_step
        from jitctl.demo.incident_story import IncidentChapter

        return [
            ("the shared request table", self.setup),
            ("on call: the fast track", self.fast_track),
            ("peer approval", self.peer_approval),
            ("a denial", self.denial),
            ("audit verify", self.audit),
            *BrokerChapter(self).steps(),
            *IncidentChapter(self).steps(),
            ("IAM Identity Center: a permission set", lambda: sso_step(self)),
        ]

    def setup(self) -> None:
        self.say("Once per team: create the shared request store (a DynamoDB table, here in moto).")
        self.jitctl("alice", "init")

    def fast_track(self) -> None:
        self.say(
            "Alice is paged. PagerDuty says she is on call for the checkout service's\n"
            f"escalation policy {ESCALATION_POLICY} (level 1), so the policy fast-tracks her:\n"
            "credentials at once, nobody else woken up."
        )
        self.jitctl("alice", "whoami", shows=[f"{ESCALATION_POLICY} level 1"])
        self.jitctl(
            "alice",
            "request",
            "prod-readonly",
            "--reason",
            f"{INCIDENT} checkout latency",
            shows=["fast-tracked"],
        )

    def peer_approval(self) -> None:
        self.say(
            "Dave, her level-2 backup, wants to look too. Level 2 is not fast-tracked for\n"
            "prod-readonly, so his request waits for a peer (another SRE)."
        )
        argv = ["request", "prod-readonly", "--reason", f"{INCIDENT} replica lag on db-3"]
        self.prompt("dave", ["jitctl", *argv], "   # waits; its output shows when it ends")
        waiter = self.team.popen("dave", *argv)
        try:
            request_id = self._await_pending(waiter, "dave", "prod-readonly")
            self.say("Bob, in the sre group, sees the request and approves it.")
            self.jitctl("bob", "list", "--pending", shows=[request_id])
            self.jitctl("bob", "approve", request_id, "--reason", "go ahead", shows=["approved"])
            try:
                stdout, stderr = waiter.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                raise StepFailed(
                    "dave's waiting request did not finish after bob approved"
                ) from None
        finally:
            _stop(waiter)
        self.say("Dave's waiting command finishes with credentials:")
        self.prompt("dave", ["jitctl", *argv], "   # (the one waiting above)")
        done = subprocess.CompletedProcess(waiter.args, waiter.returncode, stdout, stderr)
        self.output(done)
        check(done, "dave's waiting jitctl request", 0, [f"approved by {email('bob')}"])
        self.say("Any AWS tool can use the profile jitctl wrote; AWS sees dave's assumed role:")
        self.prompt("dave", ["AWS_PROFILE=jit-prod-readonly", "python", "-c", CONSUMER])
        env = self.team.env("dave", AWS_PROFILE="jit-prod-readonly")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(key, None)  # only the profile: what a separate program would see
        arn = subprocess.run(
            [sys.executable, "-c", CONSUMER],
            env=env,
            cwd=self.team.root,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.output(arn)
        want = f"assumed-role/prod-readonly/{email('dave')}"
        if arn.returncode != 0 or not arn.stdout.strip().endswith(want):
            raise StepFailed(f"the profile jit-prod-readonly is not {want}: {arn.stderr.strip()}")

    def denial(self) -> None:
        self.say(
            "Carol asks for prod-admin without waiting (--no-wait prints the request id).\n"
            "prod-admin is never fast-tracked and needs two approvers; bob says no."
        )
        done = self.jitctl(
            "carol",
            "request",
            "prod-admin",
            "--reason",
            f"{INCIDENT} restart the checkout fleet",
            "--no-wait",
        )
        request_id = done.stdout.strip()
        if not request_id:
            raise StepFailed("jitctl request --no-wait printed no request id")
        reason = "read-only is enough to diagnose; ask the incident commander first"
        self.jitctl("bob", "deny", request_id, "--reason", reason, shows=["denied"])
        self.jitctl("carol", "status", request_id, shows=["denied", reason])

    def audit(self) -> None:
        self.say("Every step left hash-chained audit records; each person's log verifies intact.")
        for name in PEOPLE:
            self.jitctl(name, "audit", "verify", shows=["hash chain intact"])

    def _await_pending(self, waiter: subprocess.Popen[str], name: str, role: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if waiter.poll() is not None:
                _, err = waiter.communicate()
                raise StepFailed(f"{name}'s request ended early ({waiter.returncode}): {err}")
            listed = self.quietly("bob", "list", "--pending", "--json")
            try:
                rows = json.loads(listed.stdout) if listed.returncode == 0 else []
            except ValueError:
                rows = []
            for row in rows:
                if row.get("requester") == email(name) and row.get("role") == role:
                    return str(row["request_id"])
            time.sleep(0.3)
        raise StepFailed(f"{name}'s pending request never showed up in `jitctl list --pending`")

    def play(self) -> tuple[int, str | None]:
        """Run every step: (steps done, the failure message or None)."""
        with self.cleanup:
            steps = self.steps()
            for number, (title, step) in enumerate(steps, 1):
                self.write("")
                self.say(f"{number}. {title}")
                try:
                    step()
                except StepFailed as exc:
                    return number - 1, f"step {number} ({title}) failed: {exc}"
                except subprocess.TimeoutExpired as exc:
                    return number - 1, f"step {number} ({title}) failed: timed out: {exc.cmd}"
            return len(steps), None


def check(
    done: subprocess.CompletedProcess[str], what: str, expect: int, shows: Iterable[str]
) -> None:
    if done.returncode != expect:
        raise StepFailed(f"`{what}` exited {done.returncode}, expected {expect}")
    said = f"{done.stdout}\n{done.stderr}"
    for text in shows:
        if text not in said:
            raise StepFailed(f"`{what}` did not say {text!r}")


def _stop(proc: subprocess.Popen[str]) -> None:
    """End a background jitctl of ours: Ctrl-C first (it cancels its request), then kill."""
    import signal

    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
