"""One way to build a test world and to act in it, in either mode.

``World`` is what the direct-mode team (``tests/harness.Team``: a SQLite or DynamoDB store,
``use_store``) and the broker's world (``tests/broker_world.BrokerWorld``: the broker as a
subprocess over a moto server of its own, ``own_world``) share: people with homes, AWS keys
and PagerDuty users, the installed ``jitctl`` run as any of them (``run``, ``popen``), an
on-call shift (``on_call``), and a person's environment in this process (``act_as``).
Enforcement is ``conftest.enforcing``; incidents and paging are ``tests/incident_world``'s
fixtures over the team. moto starts one way: ``conftest.loopback_moto`` in this process (the
session's server, ``own_world``), or ``conftest.moto_process`` where a test needs enforcement of
its own (``enforce``). docs/pending/h-tworld.md has the table of what to use for what.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jitctl.context import Environment
from jitctl.demo.homes import Homes
from jitctl.wiring import choose_service
from tests.conftest import clean_env

ALICE, BOB, CAROL, DAVE = (f"{name}@example.com" for name in ("alice", "bob", "carol", "dave"))

# What boto3 and jitctl read from the process environment (``act_as`` exports these only).
PROCESS_KEYS = ("AWS_", "JITCTL_", "XDG_")


def key_env(creds: Mapping[str, Any]) -> dict[str, str]:
    """AWS's answer with credentials (an access key, or an STS session) as the environment
    variables boto3 reads."""
    env = {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
    }
    if "SessionToken" in creds:
        env["AWS_SESSION_TOKEN"] = creds["SessionToken"]
    return env


def export(monkeypatch: Any, environ: Mapping[str, str]) -> None:
    """Point this process at ``environ`` (boto3 reads the process environment): its AWS,
    jitctl and XDG variables and HOME, undone when the test ends."""
    for key, value in environ.items():
        if key.startswith(PROCESS_KEYS) or key == "HOME":
            monkeypatch.setenv(key, value)


def stored_request(
    env: Environment,
    requester: str,
    *,
    at: datetime,
    issued_for: timedelta | None = None,
    account: str = "123456789012",
    **fields: Any,
) -> str:
    """A request decided at ``at`` (on call, unless ``fields`` say otherwise), written straight
    into ``env``'s store; with ``issued_for``, also issued at ``at`` for that long. Its id."""
    from jitctl import models
    from jitctl.lifecycle.request_rules import new_request_id

    values: dict[str, Any] = {
        "request_id": new_request_id(),
        "role": "prod-readonly",
        "requester": requester,
        "requester_arn": f"arn:aws:iam::{account}:user/{requester}",
        "reason": "INC-1",
        "duration_seconds": 3600,
        "status": models.APPROVED,
        "approval": models.ON_CALL,
        "created_at": at,
        "expires_at": at + timedelta(minutes=30),
        "decided_at": at,
    }
    req = models.AccessRequest(**{**values, **fields})
    env.store.create(req)
    if issued_for is not None:
        env.store.mark_issued(req.request_id, now=at, credentials_expire_at=at + issued_for)
    return req.request_id


class World(Homes):
    """People in moto and the PagerDuty simulator, each running the installed CLI."""

    root: Path
    moto: str
    pd: Any
    admin: dict[str, str]  # an administrator's credentials in the world's account (boto3's names)
    region = "us-east-1"

    def __init__(self, root: Path, moto: str, pd: Any) -> None:
        self.root, self.moto, self.pd = root, moto, pd
        self.exe = shutil.which("jitctl")
        assert self.exe, "jitctl is not installed (pip install -e .)"

    # ------------------------------------------------------------ what each world says

    def aws_keys(self, user: str) -> dict[str, str]:
        """``user``'s AWS access key, as environment variables."""
        raise NotImplementedError

    def pd_id(self, user: str) -> str:
        """``user``'s PagerDuty id."""
        raise NotImplementedError

    def config_of(self, user: str) -> Path:
        """The config ``user`` runs with (the team's one, unless a world says otherwise)."""
        return self.config

    def admin_client(self, service: str) -> Any:
        """A client acting as an administrator of the world's account (enforcement off)."""
        import boto3

        return boto3.client(service, endpoint_url=self.moto, region_name=self.region, **self.admin)

    # ------------------------------------------------------------ acting as someone

    def env(self, user: str, **extra: str) -> dict[str, str]:
        """A subprocess environment for ``user``: their home, config and keys, moto for AWS."""
        env = clean_env(
            **self.home_env(user),
            AWS_ENDPOINT_URL=self.moto,
            AWS_REGION=self.region,
            AWS_EC2_METADATA_DISABLED="true",
            NO_COLOR="1",
            COLUMNS="200",
            **self.aws_keys(user),
        )
        env["JITCTL_CONFIG"] = str(self.config_of(user))
        env.update(extra)
        return env

    def act_as(self, monkeypatch: Any, user: str, clock: Any = None, **extra: str) -> Environment:
        """``user`` in this process: their variables exported, and an Environment for them
        (with ``clock`` if given, else the default trusted one)."""
        environ = self.env(user, **extra)
        export(monkeypatch, environ)
        # assembled as the CLI host does (jitctl.wiring): the service its config names
        if clock is None:
            return Environment(service_factory=choose_service, environ=environ)
        return Environment(service_factory=choose_service, environ=environ, clock=clock)

    def run(
        self,
        user: str,
        *args: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *args],
            env=env or self.env(user),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def popen(
        self, user: str, *args: str, env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.exe, *args],
            env=env or self.env(user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    # ------------------------------------------------------------ PagerDuty

    def on_call(
        self,
        user: str,
        hours: float | None = 4,
        *,
        policy: str = "PEP1234",
        level: int = 1,
        since: float | None = 1,
    ) -> None:
        """``user`` on call for ``policy`` from ``since`` hours ago until ``hours`` from now
        (None: open-ended)."""
        now = datetime.now(UTC)
        start = None if since is None else now - timedelta(hours=since)
        end = None if hours is None else now + timedelta(hours=hours)
        self.pd.add_oncall(self.pd_id(user), policy, level, start=start, end=end)
