"""The demo's world: a local AWS endpoint (moto's server), the PagerDuty simulator, and a team.

Everything lives under one directory: policy files, config.toml, the simulator's throwaway
CA, and a home directory per person (shared credentials file, AWS config, audit log). Each
person has their own IAM user (``alice@example.com`` ...) with access keys in moto, and the
environment to run jitctl as them never points at the real ``~/.aws``, jitctl config or OS
keyring. moto, boto3 and cryptography are imported inside functions only.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jitctl.demo import identity_center as sso
from jitctl.demo.homes import Homes, create_person
from jitctl.demo.pdsim import PagerDutySim, make_certs
from jitctl.demo.runbook import persona_script, seed_rds

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
DOMAIN = "example.com"
PEOPLE = ("alice", "bob", "carol", "dave")
ESCALATION_POLICY = "PEP1234"
CHECKOUT_SERVICE, APPROVAL_SERVICE = "PCHECKOUT", "PAPPROVALS"  # PagerDuty services
TABLE = "jitctl-requests"
ROLES = {"prod-readonly": 7200, "prod-admin": 3600}  # role name -> IAM MaxSessionDuration

POLICY = f"""\
# The demo team's jitctl policy (the same shape as policies/prod.toml).
version = 1

[groups]
sre = ["bob@{DOMAIN}", "dave@{DOMAIN}"]
security = ["carol@{DOMAIN}"]

[roles.prod-readonly]
description = "Read-only production access for debugging incidents"
arn = "arn:aws:iam::{ACCOUNT}:role/prod-readonly"
max_duration = "2h"
session_policy = "session-policies/readonly.json"

[roles.prod-readonly.on_call]
escalation_policies = ["{ESCALATION_POLICY}"]
max_escalation_level = 1

[roles.prod-readonly.approval]
approvers = ["group:sre"]
min_approvals = 1
request_ttl = "30m"

[roles.prod-admin]
description = "Production administrator: every change needs two approvals"
arn = "arn:aws:iam::{ACCOUNT}:role/prod-admin"
max_duration = "1h"

[roles.prod-admin.approval]
approvers = ["group:sre", "group:security"]
min_approvals = 2
approve_from = ["cli", "slack"]  # Slack's buttons too, through the broker
request_ttl = "30m"
page_service = "{APPROVAL_SERVICE}"

[roles.prod-admin.incident]
services = ["{CHECKOUT_SERVICE}"]
end_with_incident = true
"""
SESSION_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadOnlyInvestigation",
            "Effect": "Allow",
            "Action": [
                "cloudwatch:Describe*",
                "cloudwatch:Get*",
                "logs:Get*",
                "ec2:Describe*",
                "rds:Describe*",
            ],
            "Resource": "*",
        },
        {
            "Sid": "NoSecretsOrData",
            "Effect": "Deny",
            "Action": ["secretsmanager:GetSecretValue", "kms:Decrypt", "s3:GetObject"],
            "Resource": "*",
        },
    ],
}
# A copy of policies/trust-policy-template.json (tests/test_demo.py keeps them equal), so the
# demo works from an installed wheel too. ACCOUNT_ID is filled in when the roles are created.
TRUST_POLICY_TEMPLATE: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "JitctlAssumeWithSourceIdentity",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::ACCOUNT_ID:root"},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
            "Condition": {"StringLike": {"sts:SourceIdentity": "*@*"}},
        }
    ],
}
# What the callers' own IAM policy needs in direct mode (moto enforces nothing until the
# broker chapter; a real account would).
CALLER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
            "Resource": f"arn:aws:iam::{ACCOUNT}:role/prod-*",
        }
    ],
}
CALLER_POLICY_NAME = "jitctl-assume-prod"  # the broker chapter takes it away again
# The admin who seeds the world (moto's server accepts any key while enforcement is off).
ADMIN_KEYS = ("AKIADEMOADMIN0000000", "demo-admin-secret")
# Settings from the outside that must not reach the demo's processes.
_OUTSIDE = ("AWS_", "JITCTL_", "PYTHON_KEYRING_", "MOTO_")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def email(name: str) -> str:
    return f"{name}@{DOMAIN}"


def outside_free(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without AWS, moto, jitctl, keyring or proxy settings (loopback only)."""
    return {
        k: v for k, v in environ.items() if not k.startswith(_OUTSIDE) and k.lower() not in _PROXIES
    }


class Endpoints:
    """moto's server and the PagerDuty simulator on 127.0.0.1, ephemeral ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._moto: Any = None
        self.aws_url = ""
        self.pd: PagerDutySim | None = None

    def start(self) -> Endpoints:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.aws_url = f"http://{host}:{port}"
        token = f"pdsim-demo-{secrets.token_hex(8)}"
        self.pd = PagerDutySim(make_certs(self.root / "pagerduty-tls"), token=token).start()
        return self

    def stop(self) -> None:
        if self.pd is not None:
            self.pd.stop()
            self.pd = None
        if self._moto is not None:
            self._moto.stop()  # werkzeug closes the listening socket when serve_forever ends
            self._moto = None


@dataclass
class DemoTeam(Homes):
    root: Path
    aws_url: str
    pd: PagerDutySim
    shift_end: datetime  # when alice's on-call shift ends
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    broker_url: str = ""  # once the broker chapter runs `jitctl broker serve`

    @property
    def policy_file(self) -> Path:
        return self.root / "policies" / "team.toml"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    def client_config(self, name: str) -> Path:
        """``name``'s config as a client of the broker: its URL and server id, nothing else."""
        return self.home(name) / "broker-client.toml"

    def env_file(self, name: str) -> Path:
        return self.root / "env" / f"{name}.sh"

    def exports(self, name: str) -> dict[str, str]:
        """What a shell needs to act as ``name`` against the demo's endpoints."""
        homes = self.home_env(name)
        return {
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            **self.keys[name],
            **{k: v for k, v in homes.items() if k.startswith(("AWS_", "JITCTL_"))},
            "JITCTL_PAGERDUTY_TOKEN": self.pd.token or "",
            # jitctl may cache credentials in the OS keyring: keep the demo's out of the real one.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """The whole environment of a process run as ``name``: nothing from the real home."""
        env = outside_free(os.environ)
        env.update(self.home_env(name))
        env.update(
            NO_PROXY="127.0.0.1,localhost",
            NO_COLOR="1",
            COLUMNS="120",
            PYTHONIOENCODING="utf-8",
            **self.exports(name),
        )
        path = _package_parent()
        if path is not None:  # run the same jitctl as this process, even from a checkout
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
        env.update(extra)
        return env

    def client_env(self, name: str) -> dict[str, str]:
        """``name`` in broker mode: the client config and no PagerDuty token (the broker's)."""
        env = self.env(name, JITCTL_CONFIG=str(self.client_config(name)))
        del env["JITCTL_PAGERDUTY_TOKEN"]
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "jitctl", *args]

    def run(
        self, name: str, *args: str, timeout: float = 120, broker: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``jitctl ARGS`` as ``name``: directly, or (``broker``) as a client of the broker."""
        return subprocess.run(
            self.command(*args),
            env=self.client_env(name) if broker else self.env(name),
            cwd=self.root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, name: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env=self.env(name),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )


def _package_parent() -> str | None:
    """The directory holding the running ``jitctl`` package, unless it is site-packages."""
    import site

    import jitctl

    parent = Path(jitctl.__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return None if parent in installed else str(parent)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def trust_policy(account: str = ACCOUNT) -> dict[str, Any]:
    """The trust policy template with ACCOUNT_ID filled in."""
    doc = copy.deepcopy(TRUST_POLICY_TEMPLATE)
    for statement in doc["Statement"]:
        principal = statement["Principal"]["AWS"]
        statement["Principal"]["AWS"] = principal.replace("ACCOUNT_ID", account)
    return doc


def admin_client(service: str, endpoint: str) -> Any:
    """A boto3 client for the admin who seeds the world (enforcement off)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ADMIN_KEYS[0],
        aws_secret_access_key=ADMIN_KEYS[1],
        config=Config(proxies={}, retries={"max_attempts": 2}),
    )


def seed_aws(aws_url: str) -> dict[str, dict[str, str]]:
    """Target roles with the trust policy, and one IAM user with access keys per person."""
    iam = admin_client("iam", aws_url)
    for role, max_session in ROLES.items():
        iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(trust_policy()),
            MaxSessionDuration=max_session,
            Description=f"jitctl demo target role {role}",
        )
    return {
        name: create_person(iam, email(name), CALLER_POLICY, CALLER_POLICY_NAME) for name in PEOPLE
    }


def seed_pagerduty(pd: PagerDutySim, now: datetime) -> datetime:
    """Everyone in PagerDuty; alice on call for PEP1234 level 1, dave her level-2 backup."""
    pd.add_escalation_policy(ESCALATION_POLICY, "Checkout (prod)")
    pd.add_service(CHECKOUT_SERVICE, ESCALATION_POLICY, "Checkout API")
    pd.add_service(APPROVAL_SERVICE, ESCALATION_POLICY, "jitctl approvals")
    ids = {name: pd.add_user(email(name), name.title()) for name in PEOPLE}
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    end = start + timedelta(hours=12)  # the end of alice's shift
    pd.add_oncall(ids["alice"], ESCALATION_POLICY, 1, start=start, end=end)
    pd.add_oncall(ids["dave"], ESCALATION_POLICY, 2, start=start, end=end)
    return end


def seed(root: Path, endpoints: Endpoints, now: datetime | None = None) -> DemoTeam:
    """Write the team's files under ``root`` and seed both endpoints."""
    assert endpoints.pd is not None, "start() the endpoints first"
    now = now or datetime.now(UTC)
    _write(root / "policies" / "team.toml", POLICY)
    readonly = root / "policies" / "session-policies" / "readonly.json"
    _write(readonly, json.dumps(SESSION_POLICY, indent=2) + "\n")
    store = f'[store]  # shared by the whole team\nbackend = "dynamodb"\ntable = "{TABLE}"\n'
    write_config(root, endpoints.pd, store)
    team = DemoTeam(root, endpoints.aws_url, endpoints.pd, seed_pagerduty(endpoints.pd, now))
    team.keys = seed_aws(endpoints.aws_url)
    _write(root / "policies" / "sso.toml", sso.policy(DOMAIN, ESCALATION_POLICY))
    sso.seed_identity_center(
        admin_client("sso-admin", endpoints.aws_url),
        admin_client("identitystore", endpoints.aws_url),
        [email(name) for name in PEOPLE],
    )
    seed_rds(admin_client("rds", endpoints.aws_url))
    for name in PEOPLE:
        (team.home(name) / ".aws").mkdir(parents=True, exist_ok=True)
        _write(team.env_file(name), persona_script(email(name), team.exports(name)))
    return team


def write_config(root: Path, pd: PagerDutySim, store: str, timeout: str = "5s") -> Path:
    """The team's config.toml: the policy directory, the simulator, and ``store`` (the whole
    ``[store]`` table: tests rewrite it to switch backends)."""
    ca_bundle = (
        pd.ca_bundle.relative_to(root) if pd.ca_bundle.is_relative_to(root) else pd.ca_bundle
    )
    path = root / "config.toml"
    _write(
        path,
        "# jitctl demo config: relative paths are relative to this file.\n"
        'policy = "policies"\n\n'
        "[pagerduty]\n"
        f'url = "{pd.url}"\n'
        f'ca_bundle = "{ca_bundle.as_posix()}"\n'
        f'timeout = "{timeout}"\n\n' + store,
    )
    return path


def init_store(team: DemoTeam) -> subprocess.CompletedProcess[str]:
    """`jitctl init`: the shared DynamoDB request table."""
    return team.run("alice", "init")
