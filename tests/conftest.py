"""Shared fixtures: moto's server on 127.0.0.1 for AWS. PagerDuty's simulator lives in tests/pdsim.py."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.harness import Team

pytest_plugins = ["tests.fixtures_pd"]


@contextmanager
def loopback_moto() -> Iterator[str]:
    """The one way to start moto: a real server on an ephemeral loopback port, stopped
    afterwards; yields its endpoint URL. (Every server of this process shares one state:
    a world of its own needs an account of its own, see tests/broker_world.)"""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_process(open_calls: int | None = None) -> Iterator[str]:
    """moto in a process of its own, whose IAM enforcement is its own (``enforcing`` switches
    every server of this process): after ``open_calls`` unauthenticated calls, or from
    ``enforce(url)`` on (None: open until then). Yields its URL; stopped afterwards."""
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    if open_calls is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(open_calls)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def enforce(url: str) -> None:
    """Switch IAM enforcement on, from now, in the ``moto_process`` at ``url``."""
    import urllib.request

    reset = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(reset, timeout=10) as answer:
        assert json.loads(answer.read())["status"] == "ok"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The session's moto server; yields its endpoint URL."""
    with loopback_moto() as url:
        yield url


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


@pytest.fixture
def enforcing() -> Iterator[None]:
    """moto's IAM enforcement on while the test runs (every ThreadedMotoServer of this process
    shares it): unsigned or unauthorized calls fail, as in AWS."""
    from moto.core.authorization import enable_iam_authentication

    old = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    try:
        with enable_iam_authentication():
            yield
    finally:
        if old is None:
            os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = old


def clean_env(**extra: str) -> dict[str, str]:
    """A subprocess environment without the developer's AWS or jitctl settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JITCTL_"))}
    env.update(extra)
    return env


class FixedClock:
    """The one fake we allow: a clock the test sets. It stands still at ``now`` unless moved
    with ``advance``; with ``tick`` it moves that many seconds before each reading (so
    records written one after another get distinct times)."""

    def __init__(
        self, now: datetime = datetime(2026, 11, 21, 4, 0, tzinfo=UTC), *, tick: float = 0.0
    ) -> None:
        self.value = now
        self.tick = timedelta(seconds=tick)

    def now(self) -> datetime:
        self.value += self.tick
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


@pytest.fixture
def team_policy() -> str | None:
    """The team's policy text; None means the harness's POLICY. A test file overrides this
    fixture to point the team at IAM roles of its own (moto's server is shared)."""
    return None


@pytest.fixture
def team(tmp_path, moto_server, pd_sim, team_policy) -> Team:
    """Alice, Bob, Carol and Dave in moto and the PagerDuty simulator, each running the
    installed CLI. A test file that needs more (an on-call shift, a DynamoDB store) overrides
    ``team`` with a fixture that asks for this one and adds to it."""
    from tests.harness import Team  # here: tests.harness imports this module

    if team_policy is None:
        return Team(tmp_path, moto_server, pd_sim)
    return Team(tmp_path, moto_server, pd_sim, policy=team_policy)


class _WebhookReceiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    """A chat webhook on loopback standing for the approvers' channel: ``posts`` holds what
    jitctl sent, ``status`` is what it answers (200 unless a test sets it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    server.posts, server.status = [], 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def notify_to(team: Team, webhook: ThreadingHTTPServer) -> None:
    """Point the team's config at the ``webhook`` receiver."""
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    team.config.write_text(team.config.read_text() + f'[notify]\nwebhook_url = "{url}"\n')


class _Recorder(BaseHTTPRequestHandler):
    """A fake endpoint: counts requests and answers with the server's canned response."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits += 1  # type: ignore[attr-defined]
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_http() -> Iterator[Any]:
    """Start local fake endpoints: fake_http(status, headers, body) -> server (.url, .hits)."""
    servers: list[ThreadingHTTPServer] = []

    def start(
        status: int, headers: dict[str, str], body: bytes, tls: Any = None
    ) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        server.hits = 0  # type: ignore[attr-defined]
        server.answer = (status, headers, body)  # type: ignore[attr-defined]
        scheme = "http"
        if tls is not None:  # jitctl.demo.tls CertFiles: a certificate from a throwaway CA
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert, tls.key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        server.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
