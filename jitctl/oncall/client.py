"""Talking to PagerDuty: the token, and a REST client whose retries are ours and bounded.

``jitctl.oncall.session`` asks the questions (who is this user, are they on call); this module makes
sure each lookup, retries included, ends within its budget with an answer or a one-line
``LookupFailed``. ``pagerduty``, ``httpx2`` and ``keyring`` are imported inside functions
only: ``jitctl --help`` must not pay for them. The token never appears in a reason or a log.
"""

from __future__ import annotations

import logging
import math
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from jitctl.config.settings import PagerDutySettings
from jitctl.errors import ConfigError, TokenError

if TYPE_CHECKING:
    from pagerduty import RestApiV2Client as PagerDutyClient

TOKEN_ENV = "JITCTL_PAGERDUTY_TOKEN"
KEYRING_SERVICE = "jitctl"
KEYRING_USER = "pagerduty"
MAX_ATTEMPTS = 3  # per request: the first try and at most two retries
BACKOFF = 0.25  # seconds before the first retry of a 5xx or network error; doubles
MIN_REQUEST_TIME = 0.1  # do not start a request with less time than this left

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # the client logs 5xx as errors; keep stderr clean


class LookupFailed(Exception):
    """PagerDuty gave no trustworthy answer. ``reason`` is one line for a human."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _RateLimited(Exception):
    """Raised from the client's postprocess hook to leave its unbounded 429 loop."""

    def __init__(self, response: Any) -> None:
        super().__init__("429")
        self.response = response


# -- the token ----------------------------------------------------------------------------
def get_token(
    env: Mapping[str, str], keyring_get: Callable[[str, str], str | None] | None = None
) -> tuple[str, str]:
    """(token, source): ``$JITCTL_PAGERDUTY_TOKEN`` ("env"), else the OS keyring ("keyring")."""
    token = (env.get(TOKEN_ENV) or "").strip()
    if token:
        return token, "env"
    try:
        if keyring_get is None:
            import keyring

            keyring_get = keyring.get_password
        token = (keyring_get(KEYRING_SERVICE, KEYRING_USER) or "").strip()
    except Exception as exc:  # NoKeyringError, KeyringError, RuntimeError, D-Bus trouble...
        raise TokenError(
            f"no PagerDuty token: no usable keyring backend is available ({type(exc).__name__})",
            f"set the token in the environment instead: export {TOKEN_ENV}=...",
        ) from None
    if token:
        return token, "keyring"
    raise TokenError(
        "no PagerDuty token found",
        f"export {TOKEN_ENV}=... or store it with `keyring set {KEYRING_SERVICE} {KEYRING_USER}`",
    )


def read_token_secret(aws: Any, secret_id: str) -> str:
    """The token stored in Secrets Manager (the broker's; clients need none). A failure is
    TokenError or AwsUnavailable: the fast track fails closed, peer approval still works."""
    from jitctl.aws import translate_error

    try:
        value = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except Exception as exc:
        raise translate_error(exc, f"cannot read the PagerDuty token secret {secret_id}") from exc
    token = (value.get("SecretString") or "").strip()
    if not token:
        raise TokenError(
            f"the PagerDuty token secret {secret_id} has no SecretString",
            "store the token as the secret's string value",
        )
    return token


# -- the client -----------------------------------------------------------------------------
@cache
def _client_class() -> type:
    import pagerduty

    class _Client(pagerduty.RestApiV2Client):
        """RestApiV2Client that never sleeps or loops on its own: retries are ours, bounded."""

        max_network_attempts = 0  # a network error raises at once, without sleeping
        max_http_attempts = 0

        def __init__(self, token: str, *, budget: float, deadline: float | None, **kw: Any) -> None:
            super().__init__(token, **kw)
            self.retry = {}  # no status-specific retries inside the library
            self.log = log.getChild("http")
            self.budget = budget  # seconds for one whole lookup
            self.deadline = deadline  # time.monotonic() instant; None: set per lookup

        def time_left(self) -> float:
            if self.deadline is None:
                return self.budget
            return self.deadline - time.monotonic()

        def prepare_headers(self, method: str, user_headers: dict[str, Any] | None = None) -> Any:
            # the API reference requires it on every call; the library sends it with a body
            headers = super().prepare_headers(method, user_headers)
            headers["Content-Type"] = "application/json"
            return headers

        def postprocess(self, response: Any, suffix: str | None = None) -> None:
            super().postprocess(response, suffix)
            if response.status_code == 429:
                raise _RateLimited(response)

        # ignore: the library's own request(method, url, **kwargs) already narrows httpx2's
        def request(self, method: str, url: str, **kw: Any) -> Any:  # type: ignore[override]
            delay = BACKOFF
            for attempt in range(1, MAX_ATTEMPTS + 1):
                left = self.time_left()
                if left < MIN_REQUEST_TIME:
                    raise _timed_out(self)
                self.timeout = left  # type: ignore[assignment]  # budget left; library: int 60
                last = attempt == MAX_ATTEMPTS
                try:
                    response = super().request(method, url, **kw)
                except _RateLimited as exc:
                    time.sleep(_rate_limit_wait(self, exc.response, attempt, last))
                    continue
                except pagerduty.HttpError:
                    raise  # 401: the library raises at once; translated by guard
                except pagerduty.Error as exc:  # a network error (max_network_attempts = 0)
                    _check_network_retry(self, exc, delay, last)
                else:
                    if response.status_code < 500 or last:
                        return response
                    if delay + MIN_REQUEST_TIME > self.time_left():
                        return response
                time.sleep(delay)
                delay *= 2
            raise AssertionError("unreachable")  # pragma: no cover

    return _Client


def _rate_limit_wait(client: Any, response: Any, attempt: int, last: bool) -> float:
    """Seconds to wait out a 429, or LookupFailed when that would pass the budget."""
    wait = _reset_seconds(response)
    if last:
        reason = f"PagerDuty rate limit (429): still limited after {attempt} attempts"
        raise LookupFailed(reason) from None
    if wait + MIN_REQUEST_TIME > client.time_left():
        reason = (
            f"PagerDuty rate limit (429): it resets in {wait:g}s, "
            f"past the {client.budget:g}s budget"
        )
        raise LookupFailed(reason) from None
    return wait


def _check_network_retry(client: Any, exc: Exception, delay: float, last: bool) -> None:
    """Return to retry a network error; LookupFailed when a retry cannot help or fit."""
    import httpx2

    cause = exc.__cause__
    if isinstance(cause, httpx2.TimeoutException):
        raise _timed_out(client) from None
    network_failure(client, cause, type(cause or exc).__name__, delay, last)


def network_failure(
    client: Any, cause: BaseException | None, what: str, delay: float, last: bool
) -> None:
    """Either client's network error, once it is not a timeout: return to retry; LookupFailed
    when the TLS certificate is not trusted (a retry cannot help) or a retry cannot fit."""
    if _is_tls_failure(cause):
        raise LookupFailed(
            "PagerDuty unreachable: its TLS certificate is not trusted "
            "(set [pagerduty] ca_bundle or JITCTL_PAGERDUTY_CA_BUNDLE)"
        ) from None
    if last or delay + MIN_REQUEST_TIME > client.time_left():
        raise LookupFailed(f"PagerDuty unreachable{_at(client)}: {what}") from None


def _timed_out(client: Any) -> LookupFailed:
    return LookupFailed(f"PagerDuty unreachable{_at(client)}: timed out after {client.budget:g}s")


def _at(client: Any) -> str:
    """ " at URL": which PagerDuty could not be reached ([pagerduty] url, JITCTL_PAGERDUTY_URL)."""
    url = getattr(client, "url", None)
    return f" at {url}" if isinstance(url, str) and url else ""


def _reset_seconds(response: Any) -> float:
    """Seconds until the limit resets: PagerDuty's ratelimit-reset, else HTTP's Retry-After
    (seconds), else 1."""
    headers = response.headers
    value = headers.get("ratelimit-reset") or headers.get("retry-after") or "1"
    try:
        wait = float(value)
    except ValueError:
        return 1.0
    return 1.0 if math.isnan(wait) else max(wait, 0.0)


def _is_tls_failure(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def make_client(
    settings: PagerDutySettings, token: str, *, deadline: float | None = None
) -> PagerDutyClient:
    """A REST API v2 client for ``settings.url``, trusting ``settings.ca_bundle`` if set.

    ``deadline`` (a ``time.monotonic()`` instant) bounds every lookup made with this
    client; without it each check_on_call/find_user call gets ``settings.timeout`` seconds.
    """
    import pagerduty

    verify: ssl.SSLContext | bool = True
    if settings.ca_bundle is not None:
        try:
            verify = ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use the PagerDuty CA bundle {settings.ca_bundle}: {exc}",
                "fix [pagerduty] ca_bundle or JITCTL_PAGERDUTY_CA_BUNDLE",
            ) from None
    budget = settings.timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        client: PagerDutyClient = _client_class()(
            token, budget=budget, deadline=deadline, base_url=settings.url, verify=verify
        )
        return client
    except pagerduty.UrlError:
        raise ConfigError(
            f"PagerDuty URL {settings.url!r} must start with https://",
            "fix [pagerduty] url or JITCTL_PAGERDUTY_URL",
        ) from None


@contextmanager
def guard(client: Any) -> Iterator[None]:
    """Start the lookup's clock (unless running) and turn PagerDuty trouble into LookupFailed."""
    fresh = client.deadline is None
    if fresh:
        client.deadline = time.monotonic() + client.budget
    try:
        yield
    except LookupFailed:
        raise
    except Exception as exc:
        reason = _trouble(client, exc)
        if reason is None:
            raise
        raise LookupFailed(reason) from None
    finally:
        if fresh:
            client.deadline = None


def _trouble(client: Any, exc: Exception) -> str | None:
    """One line for PagerDuty trouble, or None for an error of ours. The official client's
    errors are checked only when it was imported: the on-call path's reader never imports it
    (``jitctl.oncall.reader``), and an exception of a module not loaded cannot be raised."""
    pagerduty, httpx2 = sys.modules.get("pagerduty"), sys.modules.get("httpx2")
    if pagerduty is not None and isinstance(exc, pagerduty.HttpError):
        response = exc.response
        return _http_reason(response.status_code, f"GET {response.request.url.path}")
    unreachable: tuple[type[BaseException], ...] = (OSError,)
    if pagerduty is not None:
        unreachable += (pagerduty.Error, pagerduty.UrlError)
    if httpx2 is not None:
        unreachable += (httpx2.HTTPError,)
    if isinstance(exc, unreachable):
        return f"PagerDuty unreachable{_at(client)}: {type(exc).__name__}"
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError)):
        return f"PagerDuty sent an unexpected response ({type(exc).__name__})"
    return None


def _http_reason(status: int, where: str) -> str:
    if status == 401:
        return f"PagerDuty rejected the token (401): check {TOKEN_ENV}"
    if status == 403:
        return f"PagerDuty refused {where} (403): the token may not read users and on-calls"
    if status >= 500:
        return f"PagerDuty unavailable: {where} answered {status}"
    if 200 <= status < 300:
        return f"PagerDuty sent an unexpected response to {where}"
    return f"PagerDuty refused {where} ({status})"
