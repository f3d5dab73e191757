"""The demo's last chapter: the broker, a gate nobody can skip.

The admin puts the broker in front of the roles (:mod:`jitctl.demo.gate`), moto starts
enforcing IAM like a real account, and the story shows: a request through the broker that
issues, the requester's own `AssumeRole` refused by AWS, and `jitctl doctor` checking the
broker. Every command is printed as typed and checked like the earlier steps.
"""

from __future__ import annotations

import configparser
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from jitctl.demo import gate, slack_story
from jitctl.demo.failure import StepFailed
from jitctl.demo.team import ACCOUNT, REGION, email
from jitctl.errors import JitctlError

if TYPE_CHECKING:
    from jitctl.demo.stage import Stage

ROLE = "prod-readonly"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
# `aws sts assume-role` with the requester's own keys, as a one-line program the story shows
# exactly as it runs it (the AWS CLI is not a dependency of the demo): an error is one line
# naming AWS's refusal, not a traceback; on success, the ARN only, never the secret.
DIRECT_ASSUME = (
    "import boto3, sys; "
    "sys.excepthook = lambda t, e, tb: print(f'{t.__name__}: {e}', file=sys.stderr); "
    "print(boto3.client('sts').assume_role(RoleArn=sys.argv[1], RoleSessionName='me')"
    "['AssumedRoleUser']['Arn'])"
)


class BrokerChapter:
    def __init__(self, story: Stage) -> None:
        self.story = story
        self.team = story.team

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("the broker: a gate nobody can skip", self.close_gate),
            ("a request through the broker", self.through_the_broker),
            ("a direct AssumeRole, refused by AWS", self.skip_the_gate),
            ("doctor checks the broker", self.doctor),
        ]

    def close_gate(self) -> None:

        s, team = self.story, self.team
        s.say(
            "So far anyone the roles trust could skip jitctl and call sts:AssumeRole directly.\n"
            f"The team puts the broker in front: the admin gives it its own principal\n"
            f"({gate.BROKER_ARN}), makes prod-readonly and prod-admin trust it\n"
            "alone (deploy/target-role-trust-policy.json) and takes the requesters' own AWS\n"
            "permissions away. The broker runs with its own AWS keys and PagerDuty token:"
        )
        keys = gate.add_broker(team)
        s.slack = slack_story.start(s)  # Slack's stand-in; the broker's [slack] (chapter 12)
        gate.close_the_gate(team)
        s.prompt("broker", ["jitctl", "broker", "serve", "--port", "0"], "   # in the background")
        try:
            url = s.cleanup.enter_context(gate.serving(team, keys))
        except JitctlError as exc:
            raise StepFailed(str(exc)) from None
        s.write(f"jitctl broker {gate.SERVER_ID} listening on {url}")
        s.cleanup.enter_context(gate.enforcing())
        gate.write_client_configs(team)
        s.say(
            "From here on the local AWS enforces IAM like a real account. Each person's\n"
            "whole jitctl config names the broker, and nobody holds a PagerDuty token:"
        )
        config = team.client_config("alice")
        s.prompt("alice", ["cat", str(config)])
        s.write(config.read_text(encoding="utf-8").rstrip("\n"))

    def through_the_broker(self) -> None:

        s = self.story
        s.say(
            "Alice asks the broker. It checks who she is (a signed sts:GetCallerIdentity\n"
            "proof), asks PagerDuty, assumes the role itself and hands her the credentials\n"
            "(--fresh: a new grant, not her live one from step 2)."
        )
        before = self._profile_key("alice")
        argv = ["request", ROLE, "--reason", "INC-4211 replica lag, through the gate", "--fresh"]
        s.jitctl("alice", *argv, broker=True, shows=["fast-tracked"])
        if self._profile_key("alice") in ("", before):
            raise StepFailed(f"the broker's grant did not reach alice's profile jit-{ROLE}")
        arn = self._profile_arn("alice")
        want = f"assumed-role/{ROLE}/{email('alice')}"
        if not arn.endswith(want):
            raise StepFailed(f"the broker-issued profile jit-{ROLE} is {arn}, not {want}")
        s.say(f"AWS sees the broker-issued grant: {arn}")

    def skip_the_gate(self) -> None:
        s = self.story
        s.say("Can alice go around the broker with her own keys? AWS says no:")
        s.shown(
            "alice",
            ["python", "-c", DIRECT_ASSUME, ROLE_ARN],
            self.team.client_env("alice"),
            run=[sys.executable, "-c", DIRECT_ASSUME, ROLE_ARN],
            note="   # aws sts assume-role, in boto3",
            expect=1,
            shows=["AccessDenied", "not authorized to perform: sts:AssumeRole"],
        )

    def doctor(self) -> None:
        s = self.story
        s.say("`jitctl doctor` in broker mode checks the broker: reachable, the right one, who.")
        s.jitctl(
            "alice",
            "doctor",
            broker=True,
            shows=[f"server id {gate.SERVER_ID}", f"{email('alice')} (arn:aws:iam::"],
        )

    # -- checking the grant, quietly -------------------------------------------------------
    def _profile(self, name: str) -> dict[str, str]:
        ini = configparser.RawConfigParser()
        ini.read(self.team.credentials_file(name), encoding="utf-8")
        return dict(ini[f"jit-{ROLE}"]) if ini.has_section(f"jit-{ROLE}") else {}

    def _profile_key(self, name: str) -> str:
        return self._profile(name).get("aws_access_key_id", "")

    def _profile_arn(self, name: str) -> str:
        """Who AWS says the profile's credentials are (moto enforces: they must be valid)."""
        import boto3
        from botocore.config import Config

        keys = self._profile(name)
        sts = boto3.client(
            "sts",
            endpoint_url=self.team.aws_url,
            region_name=REGION,
            aws_access_key_id=keys.get("aws_access_key_id"),
            aws_secret_access_key=keys.get("aws_secret_access_key"),
            aws_session_token=keys.get("aws_session_token"),
            config=Config(proxies={}, retries={"max_attempts": 2}),
        )
        return str(sts.get_caller_identity()["Arn"])
