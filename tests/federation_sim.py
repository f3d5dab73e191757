"""A local imitation of AWS's federation endpoint, as AWS documents it (IAM User Guide,
"Enable custom identity broker access to the AWS console"), on a loopback HTTP port.

- ``GET ?Action=getSigninToken&Session=JSON[&SessionDuration=N]``: Session must be a JSON
  object with exactly the string fields sessionId, sessionKey, sessionToken; SessionDuration,
  when present, a whole number from 900 to 43200, and never for GetFederationToken
  (federated-user) credentials. The credentials must be real: the simulator asks STS (moto)
  who they are. Answers ``{"SigninToken": "..."}``; anything else is HTTP 400.
- ``GET ?Action=login&Issuer=...&Destination=...&SigninToken=...``: a token it issued, at most
  15 minutes old, sends the browser to Destination (302); anything else is HTTP 400.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_LIFETIME = 15 * 60


@dataclass
class Exchange:
    """One getSigninToken the simulator answered (kept in memory for the test to check)."""

    arn: str
    access_key_id: str
    session_duration: int | None
    token: str
    at: float = field(default_factory=time.time)


class FederationSim:
    def __init__(self, sts_endpoint: str) -> None:
        self.sts_endpoint = sts_endpoint
        self.exchanges: list[Exchange] = []
        self.logins: list[dict[str, str]] = []
        self.refuse = False  # answer every getSigninToken with 400 (AWS refusing the session)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/federation"

    def __enter__(self) -> FederationSim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ the two actions

    def get_signin_token(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.refuse:
            return 400, {"error": "refused"}
        session = _session(query.get("Session"))
        if session is None:
            return 400, {"error": "Session must hold sessionId, sessionKey, sessionToken"}
        arn = self._who(session)
        if arn is None:
            return 400, {"error": "the session's credentials are not valid"}
        duration = query.get("SessionDuration")
        if duration is not None:
            if ":federated-user/" in arn:  # AWS: do not send it for GetFederationToken
                return 400, {"error": "SessionDuration is not allowed for federated users"}
            if not duration.isdigit() or not 900 <= int(duration) <= 43200:
                return 400, {"error": "SessionDuration must be from 900 to 43200"}
        token = secrets.token_urlsafe(48)
        seconds = int(duration) if duration is not None else None
        self.exchanges.append(Exchange(arn, session["sessionId"], seconds, token))
        return 200, {"SigninToken": token}

    def login(self, query: dict[str, str]) -> tuple[int, str]:
        """(status, Location) for a login URL."""
        issued = {e.token: e for e in self.exchanges}.get(query.get("SigninToken", ""))
        destination = query.get("Destination", "")
        if issued is None or time.time() - issued.at > TOKEN_LIFETIME:
            return 400, ""
        if not destination.startswith("https://") or not query.get("Issuer"):
            return 400, ""
        self.logins.append(query)
        return 302, destination

    def _who(self, session: dict[str, str]) -> str | None:
        import boto3
        from botocore.exceptions import ClientError

        sts = boto3.client(
            "sts",
            endpoint_url=self.sts_endpoint,
            region_name="us-east-1",
            aws_access_key_id=session["sessionId"],
            aws_secret_access_key=session["sessionKey"],
            aws_session_token=session["sessionToken"],
        )
        try:
            return sts.get_caller_identity()["Arn"]
        except ClientError:
            return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                if parts.path != "/federation":
                    return self._answer(404, {"error": "not found"})
                action = query.get("Action")
                if action == "getSigninToken":
                    return self._answer(*sim.get_signin_token(query))
                if action == "login":
                    status, location = sim.login(query)
                    return self._answer(status, {}, location)
                return self._answer(400, {"error": "unknown Action"})

            def _answer(self, status: int, doc: dict[str, Any], location: str = "") -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if location:
                    self.send_header("location", location)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # the query holds credentials
                pass

        return Handler


def _session(raw: str | None) -> dict[str, str] | None:
    try:
        doc = json.loads(raw or "")
    except ValueError:
        return None
    keys = {"sessionId", "sessionKey", "sessionToken"}
    if not isinstance(doc, dict) or set(doc) != keys:
        return None
    if not all(isinstance(doc[k], str) and doc[k] for k in keys):
        return None
    return doc
