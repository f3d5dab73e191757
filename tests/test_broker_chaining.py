"""A broker on role credentials (as on Lambda, ECS or EC2): everything it assumes is role
chaining, so it issues 1h at most. The grant is cut to 1h with a note, `jitctl roles` says
what the broker can issue, and `jitctl doctor` warns, all through the broker. And the broker's
own `audit verify` says whether its log's tail is anchored by the central copy."""

from __future__ import annotations

import configparser
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jitctl.timeutil import parse_rfc3339
from tests.broker_world import BrokerWorld, broker_policy, own_world
from tests.world import key_env

pytestmark = pytest.mark.slow

ACCOUNT = "888800001111"  # a world of its own: moto's state is shared by the whole process
ALICE = "alice@example.com"
EXECUTION_ROLE = "jitctl-broker-execution"


class RoleBrokerWorld(BrokerWorld):
    """The broker runs on a session of its execution role, not on an IAM user's keys."""

    session: dict[str, str] | None = None

    def broker_env(self) -> dict[str, str]:
        env = super().broker_env()
        env.update(self._role_session())
        return env

    def _role_session(self) -> dict[str, str]:
        if self.session is None:
            self.iam.create_role(RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument="{}")
            self.iam.put_role_policy(
                RoleName=EXECUTION_ROLE,
                PolicyName="jitctl-broker",
                PolicyDocument=json.dumps(broker_policy()),
            )
            sts = self._as_broker_user("sts")
            arn = f"arn:aws:iam::{self.account}:role/{EXECUTION_ROLE}"
            creds = sts.assume_role(RoleArn=arn, RoleSessionName="lambda")["Credentials"]
            self.session = key_env(creds)
        return self.session

    def _as_broker_user(self, service: str) -> Any:
        import boto3

        keys = self.keys["broker"]
        return boto3.client(
            service,
            endpoint_url=self.moto,
            region_name="us-east-1",
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[RoleBrokerWorld]:
    root = tmp_path_factory.mktemp("role-broker")
    with own_world(root, pd_certs, RoleBrokerWorld, account=ACCOUNT) as w, w.serving():
        yield w


def test_the_broker_cuts_a_grant_to_an_hour_and_says_why(world: RoleBrokerWorld) -> None:
    world.on_call(ALICE)
    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-1", "--duration", "2h")
    assert out.returncode == 0, out.stderr
    assert "role chaining" in out.stderr and "1h, not 2h" in out.stderr
    ini = configparser.RawConfigParser()
    ini.read(world.root / "home" / ALICE / ".aws" / "credentials")
    expires = parse_rfc3339(ini["jit-prod-readonly"]["x_security_token_expires"])
    assert expires - datetime.now(UTC) <= timedelta(hours=1)


def test_roles_and_doctor_say_what_the_broker_can_issue(world: RoleBrokerWorld) -> None:
    out = world.run(ALICE, "roles", "--json")
    assert out.returncode == 0, out.stderr
    (role,) = json.loads(out.stdout)
    assert role["max_duration_seconds"] == 7200 and role["max_grant_seconds"] == 3600
    out = world.run(ALICE, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["session length"]["status"] == "warn", checks["session length"]
    assert "prod-readonly (2h)" in checks["session length"]["detail"]


def test_the_brokers_audit_verify_says_whether_its_tail_is_anchored(world: RoleBrokerWorld) -> None:
    """`audit verify` runs on the broker, over its own local log: unanchored alone, anchored
    with --remote, and a broker log missing its newest records fails against the central copy."""
    carol = "carol@example.com"
    world.on_call(ALICE)
    assert world.run(ALICE, "request", "prod-readonly", "--reason", "INC-2").returncode == 0
    alone = json.loads(world.run(carol, "audit", "verify", "--json").stdout)
    assert alone["anchored"] is False and "not anchored" in alone["anchor_note"]
    out = world.run(carol, "audit", "verify", "--remote", "--json")
    assert out.returncode == 0, out.stderr
    log = world.broker_dir / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    head = json.loads(lines[-1])
    assert json.loads(out.stdout)["anchor"]["seq"] == head["seq"]
    log.write_text("".join(lines[:-1]))  # whoever can write the broker's disk drops the newest
    try:
        out = world.run(carol, "audit", "verify", "--remote")
    finally:
        log.write_text("".join(lines))  # the world stays usable for any test after this one
    assert out.returncode == 6, out.stderr
    assert f"up to seq {head['seq']}, the local log only up to seq {head['seq'] - 1}" in out.stderr
