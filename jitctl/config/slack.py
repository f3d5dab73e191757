"""[slack]: the Slack app the broker posts requests with and takes decisions from.

Two secrets: the bot token (Web API calls) and the signing secret (proves a call came from
Slack). Each comes from the environment ($JITCTL_SLACK_BOT_TOKEN, $JITCTL_SLACK_SIGNING_SECRET),
else a Secrets Manager ARN (``*_secret``, the broker's way), else the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitctl.config.values import https_or_loopback, opt_str, resolve, seconds
from jitctl.errors import ConfigError
from jitctl.sanitize import clean

DEFAULT_API_URL = "https://slack.com/api"
SLACK_KEYS = {
    "bot_token",
    "signing_secret",
    "bot_token_secret",
    "signing_secret_secret",
    "api_url",
    "ca_bundle",
    "timeout",
}
TOKEN_VAR, SIGNING_VAR = "JITCTL_SLACK_BOT_TOKEN", "JITCTL_SLACK_SIGNING_SECRET"


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    bot_token_secret: str | None = None  # Secrets Manager ARN of the bot token
    signing_secret_secret: str | None = None  # Secrets Manager ARN of the signing secret
    api_url: str = DEFAULT_API_URL
    ca_bundle: Path | None = None
    # Each Web API call: Slack waits 3 s for the broker's answer, so a slow Slack must not
    # hold a decision (or a request) for long.
    timeout: float = 2.0

    @property
    def has_token(self) -> bool:
        return bool(self.bot_token or self.bot_token_secret)

    @property
    def has_signing_secret(self) -> bool:
        return bool(self.signing_secret or self.signing_secret_secret)


def slack_settings(
    raw: dict[str, Any], env: Mapping[str, str], base: Path, where: str
) -> SlackSettings:
    """[slack] from the config file; the environment's secrets win over the file's."""
    url = (opt_str(raw, "api_url", where) or DEFAULT_API_URL).rstrip("/")
    if not https_or_loopback(url):
        raise ConfigError(
            f"{where}: [slack] api_url {clean(url)!r} must be an https URL "
            "(plain http only on a loopback address)",
            f"the default is {DEFAULT_API_URL}",
        )
    return SlackSettings(
        bot_token=env.get(TOKEN_VAR) or opt_str(raw, "bot_token", where),
        signing_secret=env.get(SIGNING_VAR) or opt_str(raw, "signing_secret", where),
        bot_token_secret=opt_str(raw, "bot_token_secret", where),
        signing_secret_secret=opt_str(raw, "signing_secret_secret", where),
        api_url=url,
        ca_bundle=resolve(opt_str(raw, "ca_bundle", where), base),
        timeout=seconds(raw.get("timeout"), f"{where} [slack] timeout", 2.0),
    )
