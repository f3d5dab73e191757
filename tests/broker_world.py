"""A team that runs jitctl through a broker, against moto's server with IAM enforcement on.

Requesters' IAM users hold no AWS permissions at all; the broker's IAM user holds the
permissions the deployment template gives the broker's role; the target roles trust the
broker alone. `jitctl broker serve` runs as a subprocess with the broker's keys and
PagerDuty token; each person runs the installed `jitctl` with a client config that holds only
[broker] url and server_id.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from tests.conftest import clean_env, loopback_moto
from tests.world import World, key_env

# An account of the world's own: moto keeps one state per process, shared by every server and
# test, and other tests create alice, bob and carol in 123456789012 with keys and policies.
ACCOUNT = "444455556666"
SERVER_ID = "jitctl-e2e"
REGION = "us-east-1"
TABLE = "jitctl-broker-requests"
AUDIT_TABLE = "jitctl-broker-audit"
NONCE_TABLE = "jitctl-broker-nonces"
POLICY = """
version = 1

[identities]
"arn:aws:iam::444455556666:user/bob-admin" = "bob@example.com"

[groups]
sre = ["bob@example.com", "carol@example.com"]

[roles.prod-readonly]
arn = "arn:aws:iam::444455556666:role/jit-prod-readonly"
max_duration = "2h"
region = "eu-west-1"  # the client (AWS_REGION us-east-1) learns it from the broker

[roles.prod-readonly.on_call]
escalation_policies = ["PEP1234"]

[roles.prod-readonly.approval]
approvers = ["group:sre"]
request_ttl = "30m"
"""
ROOT = {"aws_access_key_id": "AKIAADMIN0000000", "aws_secret_access_key": "admin"}


_ACCOUNTS_IN_USE: set[str] = set()


def _claim_account(account: str) -> None:
    """One world per account per process: moto's state is shared by every server in it, so a
    second world in the same account finds the first one's users and secrets (and fails in
    whichever order the suite happens to run)."""
    assert account not in _ACCOUNTS_IN_USE, (
        f"account {account} already has a broker world in this process: "
        "give this module an account of its own (account=..., policy=...)"
    )
    _ACCOUNTS_IN_USE.add(account)


def broker_policy() -> dict[str, Any]:
    """The actions deploy/broker.yaml grants the broker's role, for an IAM user here: the
    demo's (one list of the broker's store and STS actions) plus its secret and signing key.

    moto authorizes these services' calls against the resource "*" (it does not resolve
    resource ARNs), so the resources are "*" here; the template scopes them."""
    from jitctl.demo.gate import BROKER_ACTIONS

    actions = [*BROKER_ACTIONS, "secretsmanager:GetSecretValue", "kms:Sign", "kms:GetPublicKey"]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    }


def trust_broker_only(broker_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": broker_arn},
                    "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                }
            ],
        }
    )


class BrokerWorld(World):
    """The broker-mode world: each person's config names only the broker."""

    def __init__(
        self, root: Path, moto: str, pd: Any, *, account: str = ACCOUNT, policy: str | None = None
    ) -> None:
        """``account``: another world in the same process needs an account of its own (moto's
        state is per process); ``policy`` defaults to POLICY moved into that account."""
        super().__init__(root, moto, pd)
        self.account = account
        self.policy = POLICY.replace(ACCOUNT, account) if policy is None else policy
        _claim_account(account)
        self.admin = _account_admin(moto, account)
        self.iam = self.admin_client("iam")
        self.keys: dict[str, dict[str, str]] = {}
        self.pd_ids: dict[str, str] = {}
        self.broker_dir = root / "broker"
        self.broker_dir.mkdir(parents=True)
        self.url = ""
        self._server: subprocess.Popen[str] | None = None

    # ------------------------------------------------------------ AWS, with enforcement off

    def user(self, name: str, policy: dict[str, Any] | None = None) -> dict[str, str]:
        if name not in self.keys:
            self.iam.create_user(UserName=name)
            if policy is not None:
                self.iam.put_user_policy(
                    UserName=name, PolicyName="jitctl", PolicyDocument=json.dumps(policy)
                )
            key = self.iam.create_access_key(UserName=name)["AccessKey"]
            self.keys[name] = key_env(key)
        return self.keys[name]

    def build(self) -> None:
        kms = self.admin_client("kms")
        self.audit_key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")[
            "KeyMetadata"
        ]["Arn"]
        secrets = self.admin_client("secretsmanager")
        secret = secrets.create_secret(Name="jitctl/pagerduty", SecretString=self.pd.token)
        self.user("broker", broker_policy())
        self.broker_arn = broker_arn = f"arn:aws:iam::{self.account}:user/broker"
        self.iam.create_role(
            RoleName="jit-prod-readonly", AssumeRolePolicyDocument=trust_broker_only(broker_arn)
        )
        for person in ("alice@example.com", "bob@example.com", "carol@example.com"):
            self.user(person)  # no policy: requesters may do nothing in AWS themselves
            self.pd_ids[person] = self.pd.add_user(person)
        policies = self.broker_dir / "policies"
        policies.mkdir()
        (policies / "team.toml").write_text(textwrap.dedent(self.policy))
        (self.broker_dir / "config.toml").write_text(
            'policy = "policies"\n'
            f'[pagerduty]\nurl = "{self.pd.url}"\nca_bundle = "{self.pd.ca_bundle}"\n'
            f'timeout = "3s"\ntoken_secret = "{secret["ARN"]}"\n'
            f'[store]\nbackend = "dynamodb"\ntable = "{TABLE}"\n'
            f'[audit]\ntable = "{AUDIT_TABLE}"\nkms_key = "{self.audit_key}"\n'
            f'[broker]\nserver_id = "{SERVER_ID}"\nsts_endpoint = "{self.moto}"\n'
            f'nonce_table = "{NONCE_TABLE}"\n'
        )
        # The operator's one setup step: the request, audit and nonce tables (moto's IAM
        # enforcement is off while the world is built; the broker's policy omits CreateTable).
        init = subprocess.run(
            [self.exe, "init", "--json"], env=self.broker_env(), capture_output=True, text=True
        )
        assert init.returncode == 0, init.stderr
        assert json.loads(init.stdout)["nonce_table"] == NONCE_TABLE

    # ------------------------------------------------------------ processes

    def broker_env(self) -> dict[str, str]:
        home = self.broker_dir / "home"
        return clean_env(
            HOME=str(home),
            XDG_DATA_HOME=str(home / "data"),
            XDG_CACHE_HOME=str(home / "cache"),
            AWS_ENDPOINT_URL=self.moto,
            AWS_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
            AWS_CONFIG_FILE=str(home / "aws-config"),
            JITCTL_CONFIG=str(self.broker_dir / "config.toml"),
            JITCTL_AUDIT_LOG=str(self.broker_dir / "audit.jsonl"),
            **self.keys["broker"],  # and no PagerDuty token: the broker reads its secret
        )

    @contextmanager
    def serving(self) -> Iterator[str]:
        log = self.broker_dir / "broker.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [self.exe, "broker", "serve", "--port", "0"],
                env=self.broker_env(),
                stdout=subprocess.DEVNULL,
                stderr=sink,
                text=True,
            )
        try:
            self.url = _await_listening(proc, log)
            yield self.url
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def aws_keys(self, user: str) -> dict[str, str]:
        return self.keys[user]

    def pd_id(self, user: str) -> str:
        return self.pd_ids[user]

    def config_of(self, user: str) -> Path:
        """``user``'s own config, naming only the broker (written on first use)."""
        config = self.home(user) / "config.toml"
        if not config.exists():
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(f'[broker]\nurl = "{self.url}"\nserver_id = "{SERVER_ID}"\n')
        return config

    client_env = World.env  # the older name

    def run(self, user: str, *args: str, env: dict[str, str] | None = None, **extra: Any) -> Any:
        """``World.run``; other keyword arguments here are variables for ``env(user, ...)``."""
        timeout = extra.pop("timeout", 60)
        return super().run(user, *args, timeout=timeout, env=env or self.env(user, **extra))

    def boto(self, person: str, service: str) -> Any:
        keys = self.keys[person]
        return boto3.client(
            service,
            endpoint_url=self.moto,
            region_name=REGION,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )

    def move_expiry(self, request_id: str, expires_at: str) -> None:
        """Rewrite a stored request's expiry as the table's operator could, with the broker's
        own keys (allowed under IAM enforcement): the broker's clock is AWS's, not movable."""
        table = self.boto("broker", "dynamodb")
        key = {"request_id": {"S": request_id}}
        item = table.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
        body = json.loads(item["body"]["S"])
        body["expires_at"] = expires_at
        item["body"] = {"S": json.dumps(body)}
        item["expires_at"] = {"S": expires_at}
        table.put_item(TableName=TABLE, Item=item)


def _account_admin(moto: str, account: str = ACCOUNT) -> dict[str, str]:
    """Credentials of an administrator in ``account``: moto hands out a session in any."""
    sts = boto3.client("sts", endpoint_url=moto, region_name=REGION, **ROOT)
    role = f"arn:aws:iam::{account}:role/world-admin"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="world-admin")["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def _await_listening(proc: subprocess.Popen[str], log: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"the broker exited with {proc.returncode}: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError("the broker did not start listening in time")


@contextmanager
def crowd(url: str, idle: int, slow: int) -> Iterator[list[Any]]:
    """``idle`` connections to the broker at ``url`` that never send a byte, and ``slow`` ones
    that have sent part of a request's headers and stall: what lets a normal call through or
    not. Yields the slow sockets; every socket is closed afterwards. Loopback only."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "::1", "localhost"), "loopback only"
    address = (parts.hostname, parts.port)
    opened: list[socket.socket] = []
    try:
        for _ in range(idle):
            opened.append(socket.create_connection(address, timeout=10))
        stalled = []
        for number in range(slow):
            sock = socket.create_connection(address, timeout=10)
            opened.append(sock)
            sock.sendall(f"POST /v1/requests HTTP/1.1\r\nHost: slow-{number}\r\nX-Slow: ".encode())
            stalled.append(sock)
        yield stalled
    finally:
        for sock in opened:
            sock.close()


@contextmanager
def own_world(
    root: Path, pd_certs: Any, cls: type[BrokerWorld] = BrokerWorld, **kwargs: Any
) -> Iterator[BrokerWorld]:
    """A broker world on a moto server and a PagerDuty simulator of its own, built (with
    enforcement off: the admin sets the account up) but not yet serving. ``kwargs`` go to
    ``cls`` (``account``, ``policy``)."""
    from tests.pdsim import PagerDutySim

    with loopback_moto() as moto, PagerDutySim(pd_certs) as pd:
        world = cls(root, moto, pd, **kwargs)
        world.build()
        yield world
