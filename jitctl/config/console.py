"""[console]: where `jitctl console` exchanges credentials for a console sign-in token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jitctl.config.values import https_or_loopback, opt_str, seconds
from jitctl.errors import ConfigError
from jitctl.sanitize import clean

DEFAULT_FEDERATION_URL = "https://signin.aws.amazon.com/federation"
CONSOLE_KEYS = {"federation_url", "timeout"}


@dataclass(frozen=True)
class ConsoleSettings:
    # AWS's federation endpoint (another partition's, e.g. signin.amazonaws-us-gov.com, or a
    # local imitation in tests). It receives the credentials: https, or http on loopback only.
    federation_url: str = DEFAULT_FEDERATION_URL
    timeout: float = 10.0  # seconds for the getSigninToken call


def console_settings(raw: dict[str, Any], env: Mapping[str, str], where: str) -> ConsoleSettings:
    """[console] from the config file; $JITCTL_CONSOLE_FEDERATION_URL wins."""
    url = (
        env.get("JITCTL_CONSOLE_FEDERATION_URL")
        or opt_str(raw, "federation_url", where)
        or DEFAULT_FEDERATION_URL
    )
    if not https_or_loopback(url) or "?" in url or "#" in url:
        raise ConfigError(
            f"{where}: [console] federation_url {clean(url)!r} must be an https URL without "
            "a query (plain http only on a loopback address)",
            f"the default is {DEFAULT_FEDERATION_URL}",
        )
    return ConsoleSettings(
        federation_url=url,
        timeout=seconds(raw.get("timeout"), f"{where} [console] timeout", 10.0),
    )
