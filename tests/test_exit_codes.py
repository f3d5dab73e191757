"""The contract's "Exit codes, made precise": a broker that does not speak HTTP, an AWS service
that answers 5xx or hangs, a full disk (5, a hang within 30 s); a store file that is not a
database (2); output nobody reads after credentials were delivered (exit code unchanged).

Every failure is a real one: loopback servers that hang, answer 500 or answer bytes that are
not HTTP, a file size limit on the process, a store file that is text."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from jitctl.aws import AwsClients
from jitctl.errors import AwsUnavailable
from tests.harness import Team
from tests.test_cli_request import on_call

ALICE = "alice@example.com"
CONTRACT_HANG = 30.0  # seconds: "a hang within 30 s"


class Listener:
    """A loopback TCP server that accepts every connection, then either says nothing
    (``reply=None``: a hang) or sends ``reply`` and closes."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.reply = reply
        self.accepted = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.reply is None:
                self.held.append(conn)  # kept open, never answered
                continue
            try:
                conn.recv(65536)
                conn.sendall(self.reply)
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hang() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def failing_500(fake_http) -> str:
    return fake_http(500, {}, b"<html>internal error</html>").url


# ---------------------------------------------------------------- AWS hangs


@pytest.mark.slow
def test_a_hung_aws_fails_the_request_with_5_within_30s(team: Team, hang: Listener) -> None:
    """STS, then whatever the command tries next: one read timeout, not one per retry and
    per call (it took 81 s)."""
    on_call(team, ALICE)
    started = time.monotonic()
    out = team.run(
        ALICE,
        "request",
        "prod-readonly",
        "--reason",
        "x",
        env=team.env(ALICE, AWS_ENDPOINT_URL=hang.url),
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 5, out.stderr
    assert elapsed < CONTRACT_HANG, elapsed
    assert "AWS" in out.stderr and "Traceback" not in out.stderr
    assert not team.credentials_file(ALICE).exists()
    assert hang.accepted == 1  # no retry of a hung call, no second call once it hung


def test_after_one_hang_every_aws_service_fails_at_once(
    aws_env, hang: Listener, monkeypatch
) -> None:
    """The first timed-out attempt is not retried, and DynamoDB, S3 and KMS are then refused
    without waiting: a command's hang costs one read timeout in all."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", hang.url)
    clients = AwsClients(read_timeout=1)
    started = time.monotonic()
    with pytest.raises(Exception, match="Read timeout"):
        clients.client("dynamodb").list_tables()
    for service, call in (
        ("s3", "list_buckets"),
        ("kms", "list_keys"),
        ("sts", "get_caller_identity"),
    ):
        with pytest.raises(AwsUnavailable, match="AWS did not answer"):
            getattr(clients.client(service), call)()
    assert hang.accepted == 1
    assert time.monotonic() - started < 5  # one 1 s read timeout, not 4 x 4 of them


def test_an_answering_aws_is_asked_again(aws_env) -> None:
    """The breaker is for hangs only: working AWS calls go through (moto)."""
    clients = AwsClients(read_timeout=1)
    assert clients.client("sts").get_caller_identity()["Account"]
    assert clients.client("sts").get_caller_identity()["Account"]


# ---------------------------------------------------------------- 5xx


def test_dynamodb_answering_500_is_exit_5(team: Team, failing_500: str) -> None:
    team.use_store('[store]\nbackend = "dynamodb"\ntable = "jit-requests"\n')
    env = team.env(ALICE, AWS_ENDPOINT_URL_DYNAMODB=failing_500)
    out = team.run(ALICE, "list", env=env)
    assert out.returncode == 5, out.stderr
    assert "DynamoDB is unavailable" in out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stdout


# ---------------------------------------------------------------- a broker that is not HTTP


@pytest.mark.parametrize(
    "reply",
    [b"SSH-2.0-OpenSSH_9.6 \x1b]0;pwned\x07\r\n", b"\x00\x01\x02\xff garbage\r\n\r\n"],
    ids=["ssh-banner", "binary"],
)
def test_a_broker_that_does_not_speak_http_is_exit_5_and_its_bytes_are_not_shown(
    team: Team, reply: bytes
) -> None:
    server = Listener(reply)
    try:
        env = team.env(ALICE, JITCTL_BROKER_URL=server.url, JITCTL_BROKER_SERVER_ID="srv-1")
        out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", env=env)
    finally:
        server.close()
    assert out.returncode == 5, out.stderr
    assert "did not answer with HTTP" in out.stderr
    for shown in (out.stdout, out.stderr):
        assert "SSH-2.0" not in shown and "garbage" not in shown and "\x1b" not in shown
    assert server.accepted >= 1  # it was asked


# ---------------------------------------------------------------- the SQLite store


def test_a_store_file_that_is_not_a_database_is_exit_2_with_the_fix(team: Team) -> None:
    store = team.root / "requests.db"
    store.write_text("these are my notes, not a database\n" * 100)
    out = team.run(ALICE, "list")
    assert out.returncode == 2, out.stderr
    assert "not a jitctl request store" in out.stderr and "[store] path" in out.stderr
    assert store.read_text().startswith("these are my notes")  # left as it was


def _file_size_limit(limit: int):
    """In the child: files may not grow past ``limit`` bytes. With SIGXFSZ ignored, the write
    fails with EFBIG, as a write to a full disk fails with ENOSPC."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_under_the_store_is_exit_5(team: Team) -> None:
    assert team.run(ALICE, "list").returncode == 0  # the store exists; its next write grows
    out = team.run(
        ALICE,
        "request",
        "prod-admin",
        "--reason",
        "x",
        "--no-wait",
        preexec_fn=_file_size_limit(4096),
    )
    assert out.returncode == 5, out.stderr
    assert "request store" in out.stderr and "Traceback" not in out.stderr
    assert "free disk space" in out.stderr


# ---------------------------------------------------------------- output nobody reads


def test_credentials_delivered_to_a_closed_pipe_are_still_exit_0(team: Team) -> None:
    """`jitctl request ... 2>&1 | head -1`, at its worst: the reader is gone before the first
    line. Nothing the command says can be written; it still delivers, and exits 0."""
    import os

    on_call(team, ALICE)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to write_end now fails with EPIPE
    try:
        proc = subprocess.run(
            [team.exe, "request", "prod-readonly", "--reason", "x"],
            env=team.env(ALICE),
            stdout=write_end,
            stderr=write_end,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0
    assert "jit-prod-readonly" in team.credentials_file(ALICE).read_text()
    assert [r["event"] for r in team.audit_records(ALICE)][-1] == "issued"


@pytest.mark.slow
def test_a_hung_broker_fails_with_5_within_30s(team: Team, hang: Listener) -> None:
    """The default [broker] timeout (25 s) is above the broker's 20 s long-poll and under the
    contract's 30 s."""
    env = team.env(ALICE, JITCTL_BROKER_URL=hang.url, JITCTL_BROKER_SERVER_ID="srv-1")
    started = time.monotonic()
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "x", env=env)
    elapsed = time.monotonic() - started
    assert out.returncode == 5, out.stderr
    assert "cannot reach the broker" in out.stderr
    assert elapsed < CONTRACT_HANG, elapsed


def test_a_full_disk_under_the_credentials_file_is_exit_5(team: Team) -> None:
    """The credentials file is rewritten whole (a temp file, then a rename): with 64 KB of the
    user's other profiles in it, the new file cannot grow past the 48 KB limit, while the
    audit log and the store (a few KB) still can."""
    on_call(team, ALICE)
    creds = team.credentials_file(ALICE)
    creds.parent.mkdir(parents=True, exist_ok=True)
    other = "".join(f"[other-{i}]\nregion = us-east-1\n" for i in range(2000))
    creds.write_text(other)
    assert creds.stat().st_size > 48 * 1024
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "x", preexec_fn=_file_size_limit(48 * 1024)
    )
    assert out.returncode == 5, out.stderr
    assert "cannot write the credentials file" in out.stderr and "free disk space" in out.stderr
    assert creds.read_text() == other  # left whole: the write went to a temp file
    assert "delivery_failed" in [r["event"] for r in team.audit_records(ALICE)]
