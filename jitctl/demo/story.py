"""The demo's story, played with the real `jitctl` commands, one process per person and step.

Each command is printed as the person would type it (``alice$ jitctl request ...``), then run
(``python -m jitctl ...`` with that person's environment) and its output shown. Every step
checks that jitctl behaved as the story says; the first that does not stops the story.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

from jitctl.demo.failure import StepFailed
from jitctl.demo.stage import Stage, check
from jitctl.demo.team import ESCALATION_POLICY, PEOPLE, email

INCIDENT = "INC-4211"
CONSUMER = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"


class Story(Stage):
    # -- the story -------------------------------------------------------------------------
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        from jitctl.demo.broker_story import BrokerChapter
        from jitctl.demo.incident_story import IncidentChapter
        from jitctl.demo.slack_story import SlackChapter
        from jitctl.demo.sso_story import story_step as sso_step

        return [
            ("the shared request table", self.setup),
            ("on call: the fast track", self.fast_track),
            ("peer approval", self.peer_approval),
            ("a denial", self.denial),
            ("audit verify", self.audit),
            *BrokerChapter(self).steps(),
            *IncidentChapter(self).steps(),
            *SlackChapter(self).steps(),
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
