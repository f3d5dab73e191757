"""`jitctl broker serve`: the broker as a WSGI app, served by waitress.

waitress is a well-kept, pure-Python, multi-threaded WSGI server with no dependencies of its
own, that runs the same on Linux, macOS and Windows and in a container; the standard
library's servers are single-threaded (wsgiref) or not meant for production (http.server).
TLS belongs to whatever fronts it (a load balancer, a sidecar); clients refuse plain http
except to a loopback address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from jitctl.broker.handler import MAX_BODY, Broker, HttpRequest

THREADS = 32  # long-polls hold a thread each: 10 waiting clients must not starve the rest


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


def serve(broker: Broker, *, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted."""
    from waitress.server import create_server

    server = create_server(
        wsgi_app(broker), host=host, port=port, threads=THREADS, ident="jitctl-broker"
    )
    on_ready(f"http://{host}:{server.effective_port}")
    try:
        server.run()
    finally:
        server.close()


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
