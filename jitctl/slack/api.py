"""Slack's Web API through slack-sdk's WebClient: the one way jitctl calls Slack.

Every failure (Slack down, ``ok: false``, rate limited, a bad answer) is a ``SlackError``:
callers decide whether it matters (a message is best effort; an identity is not). No retry
loops: Slack waits 3 seconds for the broker, so a slow Slack must not hold a decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitctl.errors import ConfigError, Unavailable

if TYPE_CHECKING:
    from jitctl.context import Environment


class SlackError(Unavailable):
    """Slack did not do what was asked (exit 5 if it ever reaches a command)."""


def bot_token(env: Environment) -> str:
    settings = env.config.slack
    token = settings.bot_token or _from_secret(env, settings.bot_token_secret, "bot token")
    if not token:
        raise ConfigError(
            "no Slack bot token",
            "set [slack] bot_token_secret (a Secrets Manager ARN) or $JITCTL_SLACK_BOT_TOKEN",
        )
    return token


def signing_secret(env: Environment) -> str:
    settings = env.config.slack
    secret = settings.signing_secret or _from_secret(
        env, settings.signing_secret_secret, "signing secret"
    )
    if not secret:
        raise ConfigError(
            "no Slack signing secret",
            "set [slack] signing_secret_secret (a Secrets Manager ARN) or "
            "$JITCTL_SLACK_SIGNING_SECRET",
        )
    return secret


def _from_secret(env: Environment, secret_id: str | None, what: str) -> str:
    return env.secret(secret_id, f"the Slack {what}") if secret_id else ""


def ssl_context(env: Environment) -> Any:
    """The CA bundle of [slack] ca_bundle (a company proxy, a test's simulator), else the
    system's trust store."""
    import ssl

    bundle = env.config.slack.ca_bundle
    return ssl.create_default_context(cafile=str(bundle) if bundle else None)


def client(env: Environment) -> Any:
    from slack_sdk import WebClient

    settings = env.config.slack
    return WebClient(
        token=bot_token(env),
        base_url=settings.api_url + "/",
        ssl=ssl_context(env),
        timeout=max(1, round(settings.timeout)),
        retry_handlers=[],  # no sleeping on Retry-After inside a broker call
    )


def call(env: Environment, method: str, **kwargs: Any) -> dict[str, Any]:
    """The WebClient's ``method`` (e.g. "chat_postMessage": it encodes each the way Slack's
    documentation asks); the answer's data."""
    from slack_sdk.errors import SlackApiError

    named = method.replace("_", ".")  # as Slack's documentation names it
    try:
        answer = getattr(client(env), method)(**kwargs)
    except SlackApiError as exc:
        raise SlackError(f"Slack {named} failed: {_why(exc.response)}") from None
    except ConfigError:
        raise
    except Exception as exc:  # network, TLS, a body that is not JSON
        raise SlackError(f"Slack {named} failed: {type(exc).__name__}: {exc}"[:300]) from None
    return dict(answer.data) if isinstance(answer.data, dict) else {}


def _why(response: Any) -> str:
    if getattr(response, "status_code", 200) == 429:
        return f"rate limited (retry after {response.headers.get('Retry-After', '?')} s)"
    data = response.data if isinstance(response.data, dict) else {}
    return str(data.get("error") or f"HTTP {response.status_code}")[:200]


def respond(env: Environment, response_url: str, text: str) -> None:
    """An ephemeral reply through the interaction's ``response_url``: only to Slack's own
    hosts (or the configured API's host), never wherever a payload points."""
    from urllib.parse import urlsplit

    from slack_sdk.webhook import WebhookClient

    host = urlsplit(response_url).hostname or ""
    ours = urlsplit(env.config.slack.api_url).hostname
    if urlsplit(response_url).scheme != "https" or not (host == ours or host == "hooks.slack.com"):
        raise SlackError(f"refusing a response_url on {host or 'no host'}")
    hook = WebhookClient(response_url, ssl=ssl_context(env), timeout=2)
    try:
        hook.send(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:
        raise SlackError(f"Slack response_url failed: {type(exc).__name__}") from None
