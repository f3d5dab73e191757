"""[broker] settings: what a client needs (url, server_id) and what the broker itself reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.config.values import https_or_loopback, opt_str, path_setting, seconds, source
from jitctl.errors import ConfigError

DEFAULT_STS_ENDPOINT = "https://sts.us-east-1.amazonaws.com"
BROKER_KEYS = {
    "url",
    "server_id",
    "sts_endpoint",
    "sts_region",
    "ca_bundle",
    "nonce_table",
    "timeout",
    "role_arn",
    "accounts",
}


@dataclass(frozen=True)
class BrokerSettings:
    """[broker]: a client needs url and server_id; the broker itself reads the rest."""

    url: str | None = None  # set: this jitctl is a client of that broker
    server_id: str | None = None
    sts_endpoint: str = DEFAULT_STS_ENDPOINT  # the one STS endpoint proofs are checked against
    sts_region: str = "us-east-1"
    ca_bundle: Path | None = None  # to trust a broker behind a private CA
    nonce_table: str | None = None  # DynamoDB table of seen nonces; else SQLite beside the store
    # Seconds a call may wait for the broker: above its 20 s long-poll, and a hung broker
    # still fails within the contract's 30 s.
    timeout: float = 25.0
    role_arn: str | None = None  # the broker's own role, for `jitctl broker check`
    accounts: tuple[str, ...] = ()  # whose callers it serves; empty: the broker's own account

    @property
    def client(self) -> bool:
        return bool(self.url)


def broker_settings(
    raw: dict[str, Any], env: Mapping[str, str], base: Path, where: str
) -> BrokerSettings:
    """[broker] from the config file, with the JITCTL_BROKER_* variables winning."""
    url = (env.get("JITCTL_BROKER_URL") or opt_str(raw, "url", where) or "").rstrip("/") or None
    server_id = env.get("JITCTL_BROKER_SERVER_ID") or opt_str(raw, "server_id", where)
    if url is not None:
        _check_broker_url(url, source(env, "JITCTL_BROKER_URL", where, "[broker] url"))
        if not server_id:
            by = source(env, "JITCTL_BROKER_URL", where, "[broker] url")
            raise ConfigError(
                f"{by} is set but the broker's server_id is not",
                "ask whoever runs the broker for its server_id: [broker] server_id in "
                f"{where}, or export JITCTL_BROKER_SERVER_ID",
            )
    ca = path_setting(env, "JITCTL_BROKER_CA_BUNDLE", raw, "ca_bundle", base, where)
    sts_endpoint = (opt_str(raw, "sts_endpoint", where) or DEFAULT_STS_ENDPOINT).rstrip("/")
    return BrokerSettings(
        url=url,
        server_id=server_id,
        sts_endpoint=sts_endpoint,
        sts_region=opt_str(raw, "sts_region", where) or _sts_region(sts_endpoint),
        ca_bundle=ca,
        nonce_table=opt_str(raw, "nonce_table", where),
        timeout=seconds(raw.get("timeout"), f"{where} [broker] timeout", 25.0),
        role_arn=opt_str(raw, "role_arn", where),
        accounts=_accounts(raw.get("accounts"), where),
    )


def _sts_region(endpoint: str) -> str:
    """The signing region of an STS endpoint: sts.REGION.amazonaws.com, else us-east-1 (the
    global endpoint's, and a local test endpoint's)."""
    import re

    found = re.match(r"https://sts\.([a-z]{2}(?:-[a-z0-9]+)+)\.amazonaws\.com", endpoint)
    return found.group(1) if found else "us-east-1"


def _check_broker_url(url: str, what: str) -> None:
    """https, or plain http only to a loopback address (a broker on this machine, tests)."""
    if not https_or_loopback(url):
        raise ConfigError(f"{what} {url!r} must be https (plain http only on a loopback address)")


def _accounts(value: Any, where: str) -> tuple[str, ...]:
    """[broker] accounts: 12-digit AWS account ids whose principals the broker serves."""
    import re

    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"\d{12}", v) for v in value
    ):
        raise ConfigError(
            f"{where}: [broker] accounts must be a list of 12-digit AWS account ids",
            'e.g. accounts = ["123456789012"]',
        )
    return tuple(value)
