"""jitctl.oncall.reader (the standard-library reader of users and on-calls) against the
PagerDuty simulator over real TLS. The shared failure semantics (401, 403, 5xx, 429 with
ratelimit-reset, hangs, bad JSON, TLS, pagination) are tests/test_oncall.py's, which run
through this reader; these are what only the reader does."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from jitctl.config.settings import PagerDutySettings
from jitctl.oncall.reader import ITERATION_LIMIT, PAGE, make_reader
from jitctl.oncall.session import PagerDutySession, check_on_call
from tests.test_oncall import EP1, check, seed_on_call, timed

H = timedelta(hours=1)


def test_429_with_retry_after_waits_that_long_then_succeeds(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(429, retry_after=0.5, path="/oncalls")
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=5)
    assert result.on_call, result.reason
    assert [r.status for r in pd_sim.requests("/oncalls")] == [429, 200]
    assert elapsed >= 0.5


def test_429_with_retry_after_past_the_budget_fails_fast(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(429, retry_after=30)
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=2)
    assert not result.on_call
    assert result.reason == "PagerDuty rate limit (429): it resets in 30s, past the 2s budget"
    assert elapsed < 1.0 and len(pd_sim.requests()) == 1


def test_an_empty_page_that_says_more_fails_closed_at_once(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(200, body=json.dumps({"oncalls": [], "more": True}), path="/oncalls")
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=5)
    assert not result.on_call
    assert result.reason == "PagerDuty sent an unexpected response (ValueError)"
    assert len(pd_sim.requests("/oncalls")) == 1 and elapsed < 2.5


def test_a_list_longer_than_the_api_pages_fails_closed_not_cut_short(pd_sim):
    """The official client stops at offset + limit = 10,000 with a warning and hands back
    what it has; a cut list could hide a second user with the same email."""
    seed_on_call(pd_sim)
    strangers = [{"id": f"PX{i}", "email": f"x{i}@example.com"} for i in range(PAGE)]
    full = json.dumps({"users": strangers, "more": True})
    pages = ITERATION_LIMIT // PAGE
    pd_sim.fail_next(200, count=pages, body=full, path="/users")
    result = check(pd_sim, "alice@example.com", timeout=30)
    assert not result.on_call
    assert result.reason == f"PagerDuty GET /users: more than {ITERATION_LIMIT} results"
    offsets = [int(r.query["offset"][0]) for r in pd_sim.requests("/users")]
    assert offsets == [i * PAGE for i in range(pages)]


def test_both_reads_share_one_connection_and_send_the_token(pd_sim):
    now = datetime.now(UTC)
    pd_sim.add_oncall(pd_sim.add_user("alice@example.com"), "PEP1", 1, now - H, now + H)
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle, timeout=5)
    with make_reader(settings, pd_sim.token) as reader:
        assert check_on_call(reader, "alice@example.com", EP1, now).on_call
        conn = reader._conn
        assert conn is not None and conn.sock is not None  # kept alive after two calls
    assert [r.path for r in pd_sim.requests()] == ["/users", "/oncalls"]
    assert {r.status for r in pd_sim.requests()} == {200}  # 401 without the token


def test_the_on_call_check_imports_no_http_client_library(pd_sim):
    """The point of the reader: the on-call path pays for no pagerduty/httpx2 import."""
    now = datetime.now(UTC)
    pd_sim.add_oncall(pd_sim.add_user("alice@example.com"), "PEP1", 1, now - H, now + H)
    code = f"""
import sys
from datetime import UTC, datetime
from jitctl.config.settings import PagerDutySettings
from jitctl.oncall.session import PagerDutySession, check_on_call
from tests.test_oncall import EP1
settings = PagerDutySettings(url={pd_sim.url!r}, ca_bundle={str(pd_sim.ca_bundle)!r})
session = PagerDutySession(settings, lambda: ({pd_sim.token!r}, "env"))
session.warm()
result = check_on_call(session, "alice@example.com", EP1, datetime.now(UTC))
session.close()
print(result.on_call, sorted(m for m in ("pagerduty", "httpx2", "httpcore2") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]"]


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records what it was asked to reach."""

    def __init__(self) -> None:
        import socket

        self.asked: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client) -> None:
        import socket

        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        target = head.split(b" ")[1].decode()
        self.asked.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


def _pipe(src, dst) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


def test_https_proxy_from_the_environment_is_used_as_the_official_client_does(pd_sim, monkeypatch):
    now = datetime.now(UTC)
    pd_sim.add_oncall(pd_sim.add_user("alice@example.com"), "PEP1", 1, now - H, now + H)
    proxy = ConnectProxy()
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        result = check(pd_sim, "alice@example.com", timeout=10)
    finally:
        proxy.close()
    assert result.on_call, result.reason
    assert proxy.asked == [pd_sim.url.removeprefix("https://")]  # one tunnel, both reads


def test_the_warm_up_opens_the_connection_the_lookups_then_use(pd_sim):
    now = datetime.now(UTC)
    pd_sim.add_oncall(pd_sim.add_user("alice@example.com"), "PEP1", 1, now - H, now + H)
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle, timeout=5)
    session = PagerDutySession(settings, lambda: (pd_sim.token, "env"))
    try:
        session.warm()
        opened = session._reader._conn
        assert opened is not None and opened.sock is not None  # TCP and TLS done ahead
        assert pd_sim.requests() == []  # connected, nothing asked yet
        assert check_on_call(session, "alice@example.com", EP1, now).on_call
        assert session._reader._conn is opened  # both reads went over it
    finally:
        session.close()


def test_a_warm_up_connect_that_hangs_does_not_stretch_the_lookup(pd_sim):
    """A PagerDuty that accepts TCP but never finishes TLS: the warm-up's connect waits, and
    the lookup that queues behind it still ends by its own deadline, closed."""
    import socket

    from tests.test_overlap import blocked_in

    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    url = f"https://127.0.0.1:{silent.getsockname()[1]}"
    settings = PagerDutySettings(url=url, ca_bundle=pd_sim.ca_bundle, timeout=1.5)
    session = PagerDutySession(settings, lambda: (pd_sim.token, "env"))
    warming = threading.Thread(target=session.warm, daemon=True)
    try:
        warming.start()
        assert blocked_in(warming, "do_handshake"), "the warm-up never started its TLS handshake"
        started = time.monotonic()
        result = check_on_call(session, "alice@example.com", EP1, datetime.now(UTC))
        elapsed = time.monotonic() - started
    finally:
        session.close()
        silent.close()
    assert not result.on_call
    assert result.reason == f"PagerDuty unreachable at {url}: timed out after 1.5s"
    assert elapsed < 1.5 + 0.75


def test_a_proxy_setting_that_cannot_be_used_fails_the_lookup_closed_not_the_warm_up(
    pd_sim, monkeypatch
):
    seed_on_call(pd_sim)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:not-a-port")
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle, timeout=5)
    session = PagerDutySession(settings, lambda: (pd_sim.token, "env"))
    errors: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    warming = threading.Thread(target=session.warm)
    warming.start()
    warming.join(30)
    try:
        result = check_on_call(session, "alice@example.com", EP1, datetime.now(UTC))
    finally:
        session.close()
    assert errors == []  # no traceback from the warm-up thread
    assert not result.on_call and result.reason.startswith("PagerDuty"), result.reason
