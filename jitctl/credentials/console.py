"""`jitctl console ROLE`: an AWS console sign-in URL for issued credentials.

AWS's documented custom identity broker flow: send the temporary credentials as a JSON
session to the federation endpoint (``Action=getSigninToken``), get a ``SigninToken`` back,
and build the login URL (``Action=login``, ``Issuer``, ``Destination``, ``SigninToken``).

The URL is a bearer secret: whoever opens it within 15 minutes is signed in as the role (AWS:
"treat the URL as a secret"). It, the token and the session JSON are handled like credentials:
never in a log, an audit record, an exception message or a repr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from jitctl.config.console import ConsoleSettings
from jitctl.errors import Denied, Unavailable
from jitctl.models import Credentials

# AWS accepts SessionDuration from 900 s to 43200 s for credentials from AssumeRole (which is
# how jitctl issues every grant); GetFederationToken credentials must not send it at all.
MIN_SESSION = 900
MAX_SESSION = 43200
URL_LIFETIME = timedelta(minutes=15)  # the login URL itself works this long
ISSUER = "jitctl"
_MAX_ANSWER = 64 * 1024
# The console of each partition, by the federation endpoint's domain.
_CONSOLES = {
    "amazonaws-us-gov.com": "https://console.amazonaws-us-gov.com/",
    "amazonaws.cn": "https://console.amazonaws.cn/",
}
_DEFAULT_CONSOLE = "https://console.aws.amazon.com/"


@dataclass(frozen=True)
class SignIn:
    """A console sign-in URL and what bounds it. ``url`` is secret: its repr hides it."""

    url: str = field(repr=False)
    session_seconds: int | None  # the SessionDuration asked for; None: the credentials' own
    url_expires_at: datetime
    session_ends_at: datetime | None  # when the credentials (and so the session) end


def session_duration(creds: Credentials, now: datetime) -> int | None:
    """The console session may not outlive the grant: what the credentials have left, at most
    AWS's 12 hours. Under AWS's 15-minute minimum it is left out, and AWS gives the session
    the credentials' own duration (its documented default)."""
    if creds.expiration is None:
        return None
    left = int((creds.expiration - now).total_seconds())
    if left < MIN_SESSION:
        return None
    return min(left, MAX_SESSION)


def sign_in(creds: Credentials, *, settings: ConsoleSettings, now: datetime) -> SignIn:
    """Exchange ``creds`` for a sign-in token and build the login URL."""
    seconds = session_duration(creds, now)
    token = _signin_token(creds, settings, seconds)
    url = login_url(settings.federation_url, token)
    return SignIn(url, seconds, now + URL_LIFETIME, creds.expiration)


def login_url(federation_url: str, token: str) -> str:
    query = {
        "Action": "login",
        "Issuer": ISSUER,
        "Destination": console_home(federation_url),
        "SigninToken": token,
    }
    return f"{federation_url}?{urlencode(query)}"


def console_home(federation_url: str) -> str:
    """The console of the federation endpoint's partition (aws, aws-us-gov, aws-cn)."""
    host = urlsplit(federation_url).hostname or ""
    for domain, console in _CONSOLES.items():
        if host == domain or host.endswith("." + domain):
            return console
    return _DEFAULT_CONSOLE


def _signin_token(creds: Credentials, settings: ConsoleSettings, seconds: int | None) -> str:
    session = {
        "sessionId": creds.access_key_id,
        "sessionKey": creds.secret_access_key,
        "sessionToken": creds.session_token,
    }
    query = {"Action": "getSigninToken", "Session": json.dumps(session)}
    if seconds is not None:
        query["SessionDuration"] = str(seconds)
    answer = _get(f"{settings.federation_url}?{urlencode(query)}", settings)
    token = answer.get("SigninToken")
    if not isinstance(token, str) or not token:
        raise Unavailable(
            f"the federation endpoint {_where(settings)} answered without a SigninToken",
            "check [console] federation_url",
        )
    return token


def _get(url: str, settings: ConsoleSettings) -> dict[str, Any]:
    """GET ``url`` (it holds the credentials): no redirects, bounded time and size. Errors
    name the endpoint, never the URL."""
    import http.client
    import urllib.error

    where = _where(settings)
    try:
        with _opener().open(url, timeout=settings.timeout) as resp:
            raw = resp.read(_MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        raise _refused(exc.code, where) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise Unavailable(
            f"cannot reach the federation endpoint {where}: {reason}",
            "check your network and [console] federation_url; the grant stays issued",
        ) from None
    try:
        doc = json.loads(raw[:_MAX_ANSWER])
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise Unavailable(f"the federation endpoint {where} answered with something not JSON")
    return doc


def _refused(status: int, where: str) -> Exception:
    if 400 <= status < 500:
        return Denied(
            f"the federation endpoint {where} refused the grant's credentials (HTTP {status})",
            "AWS signs in only role sessions assumed with long-term keys (no role chaining); "
            "see docs/requests.md, The AWS console",
        )
    return Unavailable(f"the federation endpoint {where} failed (HTTP {status})", "try again")


def _where(settings: ConsoleSettings) -> str:
    parts = urlsplit(settings.federation_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _opener() -> Any:
    """urllib with redirects refused: the credentials go to the configured host only."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect())
