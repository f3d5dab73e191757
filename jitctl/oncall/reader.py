"""PagerDuty's read calls on the on-call path, with the standard library's ``http.client``.

Why not the official client here: importing ``pagerduty`` imports ``httpx2``, ``httpcore2``,
``h11``, ``anyio`` and ``idna`` (about 140 ms, holding the interpreter lock, so a thread
cannot hide it), which was most of what made an on-call ``jitctl request`` slower than a
plain script (docs/performance.md). The official client still makes every other call
(incidents, notes, pages: ``jitctl.oncall.incidents``).

Same rules as that client: classic pagination followed to the end (``limit``, ``offset``,
``more``), our bounded retries (5xx and network errors: ``MAX_ATTEMPTS``, doubling
``BACKOFF``; a 429 waits ``ratelimit-reset`` or ``Retry-After`` only while the budget allows),
one deadline per lookup, and every doubt a one-line ``LookupFailed``. One connection and one
TLS context per command.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from jitctl.config.settings import PagerDutySettings
from jitctl.errors import ConfigError
from jitctl.oncall.client import (
    BACKOFF,
    MAX_ATTEMPTS,
    MIN_REQUEST_TIME,
    LookupFailed,
    _http_reason,
    _rate_limit_wait,
    _timed_out,
    network_failure,
)

PAGE = 100  # the API's largest classic page
ITERATION_LIMIT = 10_000  # the API refuses offset + limit beyond this
MAX_BODY = 8 * 1024 * 1024  # bytes: an answer larger than this is not PagerDuty's
ACCEPT = "application/vnd.pagerduty+json;version=2"


class HttpStatus(LookupFailed):
    """PagerDuty answered with an error status (``status``); ``reason`` says what it means."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class PagerDutyReader:
    """GET requests to PagerDuty's REST API v2 over one kept-alive HTTPS connection."""

    def __init__(
        self, url: str, token: str, tls: ssl.SSLContext, *, budget: float, deadline: float | None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"PagerDuty URL {url!r} must start with https://",
                "fix [pagerduty] url or JITCTL_PAGERDUTY_URL",
            )
        self.url = url
        self.host, self.port = parts.hostname, parts.port or 443
        self.prefix = parts.path.rstrip("/")
        self.tls = tls
        self.budget = budget  # seconds for one whole lookup
        self.deadline = deadline  # time.monotonic() instant; None: set per lookup
        self._headers = {
            "Authorization": f"Token token={token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",  # the API reference requires it on every call
            "User-Agent": "jitctl",
        }
        self._conn: http.client.HTTPSConnection | None = None
        self._line = threading.Lock()  # one request, or the warm-up's connect, at a time

    def __enter__(self) -> PagerDutyReader:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection (TCP, TLS) before the first request: the warm-up thread does
        it while AWS answers. A failure is left for the first request to meet and report.
        A request waiting for it still ends by its own deadline (``_send`` reads the time
        left once it holds the line)."""
        with self._line:
            if self._conn is not None:
                return
            conn = self._connection()
            conn.timeout = self.budget
            try:
                conn.connect()
            except (OSError, http.client.HTTPException):
                conn.close()
                return
            self._conn = conn

    def time_left(self) -> float:
        if self.deadline is None:
            return self.budget
        return self.deadline - time.monotonic()

    def iter_all(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a classic-paginated list (``GET /users``, ``/oncalls``), page by
        page until ``more`` is false. A list longer than the API can page through fails
        closed rather than being cut short."""
        wrapper = path.strip("/").rsplit("/", 1)[-1]
        offset = 0
        while True:
            if offset + PAGE > ITERATION_LIMIT:
                raise LookupFailed(f"PagerDuty GET {path}: more than {ITERATION_LIMIT} results")
            body = self.get(path, {**(params or {}), "limit": PAGE, "offset": offset})
            items = body[wrapper]
            if not isinstance(items, list):
                raise TypeError(wrapper)
            yield from items
            if not body.get("more"):
                return
            if not items:  # "more", yet nothing on this page: it would never end
                raise ValueError("an empty page that says there is more")
            offset += len(items)

    def rget(self, path: str, wrapper: str) -> dict[str, Any]:
        """One resource (``GET /services/{id}``), unwrapped from ``{wrapper: {...}}``."""
        found = self.get(path)[wrapper]
        if not isinstance(found, dict):
            raise TypeError(wrapper)
        return found

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON object ``GET path`` answers; HttpStatus for an error status."""
        answer = self.request("GET", path, params)
        if not 200 <= answer.status < 300:
            raise HttpStatus(answer.status, _http_reason(answer.status, f"GET {path}"))
        body = json.loads(answer.body)
        if not isinstance(body, dict):
            raise TypeError("body")
        return body

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Answer:
        """One request with our bounded retries: the answer, or LookupFailed."""
        target = self.prefix + path + ("?" + urlencode(params, doseq=True) if params else "")
        delay = BACKOFF
        for attempt in range(1, MAX_ATTEMPTS + 1):
            left = self.time_left()
            if left < MIN_REQUEST_TIME:
                raise _timed_out(self)
            last = attempt == MAX_ATTEMPTS
            try:
                answer = self._send(method, target)
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # the connection is in an unknown state: a fresh one next time
                self._check_network_retry(exc, delay, last)
            else:
                if answer.status == 429:
                    time.sleep(_rate_limit_wait(self, answer, attempt, last))
                    continue
                if answer.status < 500 or last or delay + MIN_REQUEST_TIME > self.time_left():
                    return answer
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, target: str) -> Answer:
        with self._line:
            timeout = self.time_left()  # after any wait for the warm-up's connect
            if timeout < MIN_REQUEST_TIME:
                raise TimeoutError
            if self._conn is None:
                self._conn = self._connection()
            self._conn.timeout = timeout  # used when connecting
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
            self._conn.request(method, target, headers=self._headers)
            response = self._conn.getresponse()
            body = response.read(MAX_BODY + 1)
            if response.will_close:
                self.close()
        if len(body) > MAX_BODY:
            raise ValueError("an answer larger than PagerDuty sends")
        return Answer(response.status, response.headers, body)

    def _connection(self) -> http.client.HTTPSConnection:
        """A connection to PagerDuty, through HTTPS_PROXY (a CONNECT tunnel) unless NO_PROXY
        names the host: the environment the official client (httpx2) honours too."""
        import urllib.request

        proxy = urllib.request.getproxies().get("https")
        if not proxy or urllib.request.proxy_bypass(self.host):
            return http.client.HTTPSConnection(self.host, self.port, context=self.tls)
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 80, context=self.tls)
        headers = {}
        if parts.username is not None:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        conn.set_tunnel(self.host, self.port, headers=headers)
        return conn

    def _check_network_retry(self, exc: BaseException, delay: float, last: bool) -> None:
        """Return to retry a network error; LookupFailed when a retry cannot help or fit."""
        if isinstance(exc, TimeoutError):
            raise _timed_out(self) from None
        network_failure(self, exc, type(exc).__name__, delay, last)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def make_reader(
    settings: PagerDutySettings, token: str, *, deadline: float | None = None
) -> PagerDutyReader:
    """A reader for ``settings.url``, trusting ``settings.ca_bundle`` if set (else what the
    official client trusts). ``deadline`` as for ``jitctl.oncall.client.make_client``."""
    budget = settings.timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
    return PagerDutyReader(
        settings.url, token, tls_context(settings), budget=budget, deadline=deadline
    )


def tls_context(settings: PagerDutySettings) -> ssl.SSLContext:
    if settings.ca_bundle is not None:
        try:
            return ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use the PagerDuty CA bundle {settings.ca_bundle}: {exc}",
                "fix [pagerduty] ca_bundle or JITCTL_PAGERDUTY_CA_BUNDLE",
            ) from None
    if sys.platform in ("win32", "darwin"):
        # The OS trust store, as the official client uses there (httpcore2: truststore).
        import httpcore2

        context: ssl.SSLContext = httpcore2.default_ssl_context()
        return context
    return ssl.create_default_context()  # OpenSSL's paths, SSL_CERT_FILE / SSL_CERT_DIR honoured
