"""`jitctl broker serve`: the broker as a WSGI app, served by waitress.

waitress is a well-kept, pure-Python, multi-threaded WSGI server with no dependencies of its
own, that runs the same on Linux, macOS and Windows and in a container; the standard
library's servers are single-threaded (wsgiref) or not meant for production (http.server).
TLS belongs to whatever fronts it (a load balancer, a sidecar); clients refuse plain http
except to a loopback address.

Staying up for everyone: waitress reads every request whole on its event loop before a thread
runs it, so an idle or slow socket costs a file descriptor, never a thread. What stops it
answering is its connection limit (100 by default, with idle sockets kept 120 s): ~100 idle
connections used to lock everybody out, break-glass included. So the limit is high (bounded
by the descriptors the process may open), idle connections close after ``Limits.idle``
seconds, a request must arrive whole within ``Limits.request`` seconds of its first byte, and
headers and bodies are capped; a body over MAX_BODY is refused from its Content-Length, before
it is read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jitctl.broker.handler import MAX_BODY, Broker, HttpRequest

THREADS = 32  # long-polls hold a thread each: 10 waiting clients must not starve the rest
_SPARE_FDS = 64  # descriptors kept for the store, the nonce store, the audit log, AWS calls


@dataclass(frozen=True)
class Limits:
    """How long and how much a connection may take (seconds, connections, bytes)."""

    idle: int = 10  # an open connection with no request in it (waitress's channel_timeout)
    request: int = 10  # from a request's first byte to its last (headers and body)
    sweep: int = 1  # how often both are checked (waitress's cleanup_interval)
    connections: int = 4000  # open at once, at most: the descriptors the process may open
    header_bytes: int = 32 * 1024  # a proof is ~3 KiB of headers
    housekeeping: float = 60.0  # `jitctl sweep` as the broker, this often (as Lambda's schedule)


def wsgi_app(broker: Broker) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = broker.handle(to_request(environ))
        body = response.encoded()
        headers = [*response.headers.items(), ("content-length", str(len(body)))]
        start_response(f"{response.status} {_REASONS.get(response.status, 'Status')}", headers)
        return [body]

    return app


def to_request(environ: dict[str, Any]) -> HttpRequest:
    from urllib.parse import quote

    path = quote(environ.get("PATH_INFO", "") or "/", safe="/-_.~")
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(min(length, MAX_BODY + 1)) if length > 0 else b""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return HttpRequest(method=environ["REQUEST_METHOD"], path=path, headers=headers, body=body)


def serve(
    broker: Broker,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    limits: Limits = Limits(),  # noqa: B008 (frozen: one shared default is safe)
) -> None:
    """Serve until interrupted."""
    from waitress.server import create_server

    server = create_server(
        wsgi_app(broker),
        host=host,
        port=port,
        threads=THREADS,
        ident="jitctl-broker",
        connection_limit=_connection_limit(limits.connections),
        channel_timeout=limits.idle,
        cleanup_interval=limits.sweep,
        max_request_header_size=limits.header_bytes,
        max_request_body_size=MAX_BODY,  # waitress answers 413 from Content-Length, unread
        asyncore_use_poll=True,  # select() cannot watch descriptors past 1024
    )
    for listener in _listeners(server):
        _bound_requests(listener, limits.request)
    stop = _housekeeping(broker, limits.housekeeping)
    on_ready(f"http://{host}:{server.effective_port}")
    try:
        server.run()
    finally:
        stop.set()
        server.close()


def _housekeeping(broker: Broker, every: float) -> threading.Event:
    """Run the broker's sweep every ``every`` seconds on a thread of its own (expired grants'
    assignments, ended incidents, pages), as the Lambda's schedule does; set the event to stop.
    A failed run is logged and the next one tries again."""
    import logging

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                report = broker.housekeeping()
            except Exception as exc:  # the server keeps serving; the next run tries again
                logging.getLogger("jitctl.broker").warning("housekeeping failed: %s", exc)
                continue
            for problem in report.get("problems", []):
                logging.getLogger("jitctl.broker").warning("housekeeping: %s", problem)

    threading.Thread(target=loop, name="jitctl-housekeeping", daemon=True).start()
    return stop


def _connection_limit(wanted: int) -> int:
    """``wanted``, or fewer if the process may not open that many descriptors (its soft limit
    is raised to the hard one first: a default of 1024 would otherwise be the limit)."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit to speak of
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = wanted + _SPARE_FDS if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = max(soft, target)
        except (ValueError, OSError):
            pass
    return max(min(wanted, soft - _SPARE_FDS), 1)


def _listeners(server: Any) -> list[Any]:
    """The listening servers: one, or several when ``host`` has several addresses."""
    return [s for s in getattr(server, "map", {}).values() if hasattr(s, "maintenance")] or [server]


def _bound_requests(listener: Any, seconds: int) -> None:
    """waitress closes idle connections only: one that sends a byte now and then (slowloris)
    is never idle. Each sweep also closes a connection whose request, begun more than
    ``seconds`` ago, has not arrived whole."""
    from waitress.channel import HTTPChannel

    class Channel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped: HTTPChannel is Any
        began = 0.0

        def received(self, data: bytes) -> bool:
            if self.request is None:
                self.began = time.time()  # waitress's clock for last_activity too
            return bool(super().received(data))

    sweep = listener.maintenance

    def maintenance(now: float) -> None:
        sweep(now)
        for channel in list(listener.active_channels.values()):
            if getattr(channel, "request", None) is not None and now - channel.began > seconds:
                channel.will_close = True

    listener.channel_class = Channel
    listener.maintenance = maintenance


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
