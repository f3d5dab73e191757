"""Shared fixtures: moto's server on 127.0.0.1 for AWS. PagerDuty's simulator lives in tests/pdsim.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.fixtures_pd"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real moto server on an ephemeral loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, tmp_path, monkeypatch) -> dict[str, str]:
    """Environment pointing boto3 at moto, with nothing leaking in from the developer's machine."""
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAADMINADMINADMIN1",
        "AWS_SECRET_ACCESS_KEY": "admin-secret",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws" / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "aws" / "config"),
    }
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def clean_env(**extra: str) -> dict[str, str]:
    """A subprocess environment without the developer's AWS or jitctl settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JITCTL_"))}
    env.update(extra)
    return env
