"""The demo team moves to the broker: the gate nobody can skip.

The admin (enforcement still off) gives the broker its own principal, makes the target roles
trust that principal alone and takes away the requesters' own permission to assume them; then
`jitctl broker serve` runs as a separate process with the broker's credentials and the
PagerDuty token, and moto's IAM enforcement is switched on, so AWS refuses what the policies
refuse. The broker's principal is an IAM user here, standing in for the deployment's role:
moto matches a trust policy's principal literally, so a role's session would not match it.
A client's config names only the broker. moto and boto3 are imported inside functions only.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jitctl.demo.team import (
    ACCOUNT,
    CALLER_POLICY_NAME,
    PEOPLE,
    REGION,
    ROLES,
    TABLE,
    DemoTeam,
    admin_client,
    email,
)
from jitctl.errors import JitctlError
from jitctl.identity_center.sso import ACTIONS as IDENTITY_CENTER_ACTIONS

SERVER_ID = "jitctl-demo"
BROKER_USER = "jitctl-broker"
BROKER_ARN = f"arn:aws:iam::{ACCOUNT}:user/{BROKER_USER}"
# A copy of deploy/target-role-trust-policy.json (tests/test_demo.py keeps them equal), so the
# demo works from an installed wheel too. BROKER_ROLE_ARN is filled in with the broker's ARN.
TARGET_TRUST_TEMPLATE: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "JitctlBrokerOnly",
            "Effect": "Allow",
            "Principal": {"AWS": "BROKER_ROLE_ARN"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
            "Condition": {"Null": {"sts:SourceIdentity": "false"}},
        }
    ],
}
# What deploy/broker.yaml grants the broker's role for its store and the roles
# (tests/broker_world.py adds the secret and the signing key). moto authorizes these calls
# against the resource "*" (it does not resolve resource ARNs); the template scopes them.
BROKER_ACTIONS = (
    "sts:AssumeRole",
    "sts:SetSourceIdentity",
    "sts:TagSession",
    "iam:GetRolePolicy",
    "iam:PutRolePolicy",
    "iam:GetRole",  # whether AWS sets a caller's session name (jitctl.identity.rule)
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
    *IDENTITY_CENTER_ACTIONS,  # identity_center roles: only the broker assigns
)


def _allow(actions: Any, resource: str = "*") -> str:
    statement = {"Effect": "Allow", "Action": list(actions), "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def target_trust_policy(broker_arn: str = BROKER_ARN) -> dict[str, Any]:
    """The deployment's target-role trust policy, with the broker's role filled in."""
    doc = copy.deepcopy(TARGET_TRUST_TEMPLATE)
    for statement in doc["Statement"]:
        statement["Principal"]["AWS"] = broker_arn
    return doc


def add_broker(team: DemoTeam) -> dict[str, str]:
    """The broker's principal with the deployment's permissions, and its config. Its keys."""
    iam = admin_client("iam", team.aws_url)
    iam.create_user(UserName=BROKER_USER)
    iam.put_user_policy(
        UserName=BROKER_USER, PolicyName="jitctl-broker", PolicyDocument=_allow(BROKER_ACTIONS)
    )
    key = iam.create_access_key(UserName=BROKER_USER)["AccessKey"]
    write_broker_config(team)
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def close_the_gate(team: DemoTeam) -> None:
    """The admin's part (enforcement off): the target roles trust the broker alone, and no
    requester may assume anything with their own keys."""
    iam = admin_client("iam", team.aws_url)
    trust = json.dumps(target_trust_policy())
    for role in ROLES:
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=trust)
    for name in PEOPLE:
        iam.delete_user_policy(UserName=email(name), PolicyName=CALLER_POLICY_NAME)


def write_broker_config(team: DemoTeam) -> None:
    """The broker's config: the team's policy, store and PagerDuty, and its [broker] part."""
    pd = team.pd
    (team.broker_dir / "home").mkdir(parents=True, exist_ok=True)
    (team.broker_dir / "config.toml").write_text(
        "# The broker's config: the team's policy, store and PagerDuty, and its server id.\n"
        'policy = "../policies"\n\n'
        f'[pagerduty]\nurl = "{pd.url}"\nca_bundle = "{pd.ca_bundle.as_posix()}"\n'
        'timeout = "5s"\n\n'
        f'[store]\nbackend = "dynamodb"\ntable = "{TABLE}"\n\n'
        f'[broker]\nserver_id = "{SERVER_ID}"\nsts_endpoint = "{team.aws_url}"\n',
        encoding="utf-8",
    )


def broker_env(team: DemoTeam, keys: dict[str, str]) -> dict[str, str]:
    """The broker process's environment: its own home, AWS keys and the PagerDuty token."""
    home = team.broker_dir / "home"
    # A person's process environment (PYTHONPATH, the null keyring, no proxies) without any
    # person's AWS or jitctl settings; then the broker's own.
    env = {k: v for k, v in team.env("alice").items() if not k.startswith(("AWS_", "JITCTL_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        AWS_ENDPOINT_URL=team.aws_url,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / ".aws" / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / ".aws" / "credentials"),
        **keys,
        JITCTL_CONFIG=str(team.broker_dir / "config.toml"),
        JITCTL_AUDIT_LOG=str(team.broker_dir / "audit.jsonl"),
        JITCTL_PAGERDUTY_TOKEN=team.pd.token or "",
    )
    return env


def write_client_configs(team: DemoTeam) -> None:
    """Each person's whole config in broker mode: where the broker is, and its server id."""
    for name in PEOPLE:
        team.client_config(name).write_text(
            f'[broker]\nurl = "{team.broker_url}"\nserver_id = "{SERVER_ID}"\n', encoding="utf-8"
        )


@contextmanager
def serving(team: DemoTeam, keys: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """`jitctl broker serve --port 0` as its own process; yields its URL, stops it at the end."""
    log = team.broker_dir / "broker.log"
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            team.command("broker", "serve", "--port", "0"),
            env=broker_env(team, keys),
            cwd=team.broker_dir,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            stdin=subprocess.DEVNULL,
        )
    try:
        team.broker_url = _await_listening(proc, log, timeout)
        yield team.broker_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _await_listening(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            last = log.read_text(encoding="utf-8").strip().splitlines()[-1:] or ["no output"]
            raise JitctlError(f"demo setup: the broker exited with {proc.returncode}: {last[0]}")
        time.sleep(0.05)
    raise JitctlError(f"demo setup: the broker did not start listening in {timeout:g}s")


@contextmanager
def enforcing() -> Iterator[None]:
    """moto checks every call against IAM, like a real account, until the block ends."""
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication():
        yield
