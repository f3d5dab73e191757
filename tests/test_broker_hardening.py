"""Issue 20, items 6, 7 and 8, through a real broker: moto's IAM enforcement on, the broker's
own IAM user, requesters with no AWS permissions.

7. The nonce store judges expiry by the trusted clock, the one proofs are checked on.
8. Text a caller sends never reaches the audit raw (`audit log --json`).
6. `broker serve` answers a normal call while many idle and slow sockets are open.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.broker_world import (
    ACCOUNT,
    POLICY,
    REGION,
    SERVER_ID,
    TABLE,
    BrokerWorld,
    crowd,
    own_world,
)
from tests.conftest import FixedClock
from tests.test_broker_e2e import send

pytestmark = pytest.mark.slow
ALICE = "alice@example.com"
HARDENING_ACCOUNT = "444400003333"  # a world of its own: moto's state is shared per process


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    """One broker, its own moto server and PagerDuty simulator, for this module's tests."""
    root = tmp_path_factory.mktemp("hardening")
    policy = POLICY.replace(ACCOUNT, HARDENING_ACCOUNT)
    with own_world(root, pd_certs, account=HARDENING_ACCOUNT, policy=policy) as w, w.serving():
        yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """Every test here runs with moto's IAM enforcement on (conftest.enforcing)."""


def proof(
    world: BrokerWorld, person: str, method: str, path: str, body: bytes, now: datetime
) -> dict[str, str]:
    """The headers `jitctl` would send for this call, signed with the person's own keys at
    ``now`` (the client's idea of the time)."""
    from botocore.credentials import Credentials

    from jitctl.broker.proof import make_proof

    keys = world.keys[person]
    creds = Credentials(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"])
    return make_proof(
        creds.get_frozen_credentials(),
        sts_url=world.moto,
        sts_region=REGION,
        server_id=SERVER_ID,
        method=method,
        path=path,
        body=body,
        now=now,
    )


def requests_with_reason(world: BrokerWorld, reason: str) -> list[dict[str, Any]]:
    db = world.boto("broker", "dynamodb")  # the broker's own keys: enforcement is on
    items = db.scan(TableName=TABLE)["Items"]
    bodies = [json.loads(item["body"]["S"]) for item in items if "body" in item]
    return [b for b in bodies if b.get("reason") == reason]


# ------------------------------------------------------------------ 7. one clock for nonces


@pytest.fixture
def broker_process_env(world: BrokerWorld, monkeypatch) -> dict[str, str]:
    """This process as the broker host: the broker's keys, config and data directory."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "JITCTL_")):
            monkeypatch.delenv(name)
    environ = world.broker_env()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


def test_one_proof_replayed_on_a_broker_whose_clock_runs_an_hour_fast_makes_one_request(
    world, broker_process_env
):
    """The broker host's own clock is an hour ahead of AWS's. The trusted clock (here a
    fixed clock standing for AWS's time) checks the proof's date; the nonce store must judge
    expiry by the same clock, or every nonce is forgotten at once and a replay goes through."""
    from jitctl.broker.build import build_broker
    from jitctl.broker.handler import HttpRequest
    from jitctl.context import Environment

    aws_time = FixedClock(datetime.now(UTC) - timedelta(hours=1))
    broker = build_broker(Environment(environ=broker_process_env, clock=aws_time))
    reason = f"INC-7 replayed {datetime.now(UTC).timestamp()}"
    path, body = "/v1/requests", json.dumps({"role": "prod-readonly", "reason": reason}).encode()
    headers = proof(world, ALICE, "POST", path, body, aws_time.now())
    call = HttpRequest("POST", path, {k.lower(): v for k, v in headers.items()}, body)
    answers = [broker.handle(call) for _ in range(3)]
    assert [a.status for a in answers] == [200, 401, 401], [a.body for a in answers]
    assert all("nonce" in a.body["error"]["message"] for a in answers[1:])
    assert len(requests_with_reason(world, reason)) == 1


# ------------------------------------------------------------------ 8. clean audit text

HOSTILE = (
    "\x1b[2J\x1b[31mdisk full\x1b[0m"  # clear the screen, colour
    "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"  # an OSC 8 hyperlink
    " \u202eexe.txt\u202c \u2066isolate\u2069 \u200fmark \x9b31m bell\x07"
)
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u202c", "\u2066", "\u2069", "\u200f")


def raw_in(value: Any) -> list[str]:
    """The raw controls in any string inside ``value`` (as parsed: JSON's own escapes undone)."""
    if isinstance(value, str):
        return [ch for ch in RAW if ch in value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [ch for inner in value for ch in raw_in(inner)]
    return []


def test_a_delivery_error_sent_to_the_broker_reaches_the_audit_clean(world):
    out = world.run(ALICE, "request", "prod-readonly", "--reason", "INC-8 clean", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    path = f"/v1/requests/{request_id}/delivery-failed"
    body = json.dumps({"error": HOSTILE}).encode()
    status, doc = send(
        world, "POST", path, proof(world, ALICE, "POST", path, body, datetime.now(UTC)), body
    )
    assert status == 200, doc

    out = world.run(ALICE, "audit", "log", "--json")
    assert out.returncode == 0, out.stderr
    records = [r for r in json.loads(out.stdout) if r["request_id"] == request_id]
    failed = [r for r in records if r["event"] == "delivery_failed"]
    assert len(failed) == 1
    assert not raw_in(failed[0])
    assert "disk full" in failed[0]["error"] and "click" in failed[0]["error"]
    lines = (world.broker_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    stored = [json.loads(line) for line in lines if request_id in line]
    assert stored and not raw_in(stored)


# ------------------------------------------------------------------ 6. up for everyone


def timed_whoami(world: BrokerWorld) -> tuple[int, float]:
    """(status, seconds) of one signed `whoami`, given up after 10 s (status 0)."""
    path = "/v1/whoami"
    headers = proof(world, ALICE, "GET", path, b"", datetime.now(UTC))
    req = urllib.request.Request(world.url + path, method="GET", headers=headers)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            status = resp.status
    except OSError:  # the broker never answered
        status = 0
    return status, time.monotonic() - start


def test_a_normal_call_is_answered_while_200_idle_and_20_slow_sockets_are_open(world):
    """waitress's default connection limit (100) once let ~100 idle sockets lock everyone out,
    break-glass included. The 2 s bound is the issue's; on an idle machine it takes ~50 ms."""
    with crowd(world.url, idle=200, slow=20) as slow:
        status, seconds = timed_whoami(world)
        for sock in slow:  # they were kept open the whole time: each still takes a byte
            sock.sendall(b"x")
    assert status == 200
    assert seconds < 2.0, f"{seconds:.2f} s"


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the broker closes ``sock`` within ``seconds`` (a blocking read, no polling)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # a response (an error page) before the close is fine
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True
    return True


def test_idle_and_trickling_connections_are_closed(world):
    """An idle socket closes after Limits.idle (10 s); one that sends a header byte every
    0.2 s is never idle and closes once its request is Limits.request (10 s) old."""
    address = (urllib.parse.urlsplit(world.url).hostname, urllib.parse.urlsplit(world.url).port)
    idle = socket.create_connection(address, timeout=10)
    trickle = socket.create_connection(address, timeout=10)
    trickle.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    stop = threading.Event()

    def drip() -> None:
        for _ in range(300):  # at most 60 s
            if stop.wait(0.2):
                return
            try:
                trickle.sendall(b"a")
            except OSError:
                return  # closed by the broker

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        assert closed_within(idle, 30)
        assert closed_within(trickle, 30)
    finally:
        stop.set()
        dripper.join(timeout=5)
        idle.close()
        trickle.close()


def test_an_oversize_body_is_refused_from_its_length_unread(world):
    """Content-Length over 64 KiB: answered 413 at once, though not a byte of the body came."""
    address = (urllib.parse.urlsplit(world.url).hostname, urllib.parse.urlsplit(world.url).port)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]


# ------------------------------------------------------------------ 5. in broker mode too


def test_a_credentials_fifo_is_refused_before_the_broker_is_asked(world, tmp_path):
    fifo = tmp_path / "credentials"
    os.mkfifo(fifo, 0o600)
    reason = f"INC-5 fifo {datetime.now(UTC).timestamp()}"
    out = world.run(
        ALICE,
        "request",
        "prod-readonly",
        "--reason",
        reason,
        "--no-wait",
        AWS_SHARED_CREDENTIALS_FILE=str(fifo),
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert "is a FIFO" in out.stderr
    assert os.path.exists(fifo) and not os.path.exists(f"{fifo}.lock")
    assert requests_with_reason(world, reason) == []


@pytest.mark.parametrize("action", ["approve", "deny", "reuse", "revoke", "review"])
def test_a_reason_that_is_not_text_is_bad_input_not_a_500(world, action):
    """A `reason` of another JSON type is refused as bad input (exit 2) before the core sees
    it: it never reaches a string method as a 500."""
    path = f"/v1/requests/r-nope/{action}"
    body = json.dumps({"reason": {"not": "text"}}).encode()
    status, doc = send(
        world, "POST", path, proof(world, ALICE, "POST", path, body, datetime.now(UTC)), body
    )
    assert status == 400, doc
    assert doc["error"]["exit_code"] == 2 and "reason must be a string" in doc["error"]["message"]
