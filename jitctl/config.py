"""The config file and the environment, exactly as shared/CONTRACT.md says.

Precedence: environment variables win over the config file, which wins over defaults.
Relative paths in the config file are relative to the config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.errors import ConfigError
from jitctl.sanitize import clean, is_valid_text
from jitctl.timeutil import parse_duration
from jitctl.tomlcheck import TomlError, first_unknown_key, parse_toml, unknown_key_message

APP_NAME = "jitctl"
DEFAULT_PAGERDUTY_URL = "https://api.pagerduty.com"
DEFAULT_PAGERDUTY_TIMEOUT = 10.0  # seconds for the whole on-call lookup, retries included

_TOP_KEYS = {"policy", "pagerduty", "store", "audit", "notify", "broker"}
_AUDIT_KEYS = {"path", "table", "bucket", "prefix", "required", "region"} | {
    "kms_key",  # central records are signed (jitctl.audit_signing)
    "retention_days",  # S3 Object Lock retention of each central record
    "retention_mode",
}
_SECTION_KEYS = {
    "pagerduty": {"url", "ca_bundle", "timeout", "token_secret"},
    "store": {"backend", "path", "table", "region"},
    "audit": _AUDIT_KEYS,
    "notify": {"webhook_url", "timeout"},
    "broker": {
        "url",
        "server_id",
        "sts_endpoint",
        "sts_region",
        "ca_bundle",
        "nonce_table",
        "timeout",
        "role_arn",
        "accounts",
    },
}
DEFAULT_STS_ENDPOINT = "https://sts.us-east-1.amazonaws.com"
_BACKENDS = ("sqlite", "dynamodb")
RETENTION_MODES = ("COMPLIANCE", "GOVERNANCE")  # S3 Object Lock modes
_RETENTION_MAX_DAYS = 36500  # S3's own limit is 100 years


@dataclass(frozen=True)
class PagerDutySettings:
    url: str = DEFAULT_PAGERDUTY_URL
    ca_bundle: Path | None = None
    timeout: float = DEFAULT_PAGERDUTY_TIMEOUT
    token_secret: str | None = None  # Secrets Manager id of the token (the broker's way)


@dataclass(frozen=True)
class StoreSettings:
    backend: str = "sqlite"
    path: Path | None = None  # sqlite file; default in the user data dir
    table: str | None = None  # dynamodb table name
    region: str | None = None


def require_store_table(backend: str, table: str | None, where: str = "") -> str:
    """The DynamoDB store's table: the loader checks it with the file's name, ``open_store``
    again for settings built in code. Other backends need none (returns "")."""
    if backend == "dynamodb" and not table:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f'{prefix}[store] backend "dynamodb" needs table = "NAME"')
    return table or ""


@dataclass(frozen=True)
class NotifySettings:
    webhook_url: str | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class AuditSettings:
    path: Path
    table: str | None = None  # central sink: DynamoDB table
    bucket: str | None = None  # central sink: S3 bucket, one object per record
    prefix: str = "jitctl-audit/"
    required: bool = True  # a configured central sink that fails blocks issuing
    region: str | None = None
    kms_key: str | None = None  # asymmetric ECC_NIST_P256 key: central records are signed
    retention_days: int | None = None  # S3 Object Lock retention of each record
    retention_mode: str = "COMPLIANCE"

    @property
    def central(self) -> bool:
        return bool(self.table or self.bucket)


@dataclass(frozen=True)
class BrokerSettings:
    """[broker]: a client needs url and server_id; the broker itself reads the rest."""

    url: str | None = None  # set: this jitctl is a client of that broker
    server_id: str | None = None
    sts_endpoint: str = DEFAULT_STS_ENDPOINT  # the one STS endpoint proofs are checked against
    sts_region: str = "us-east-1"
    ca_bundle: Path | None = None  # to trust a broker behind a private CA
    nonce_table: str | None = None  # DynamoDB table of seen nonces; else SQLite beside the store
    timeout: float = 30.0
    role_arn: str | None = None  # the broker's own role, for `jitctl broker check`
    accounts: tuple[str, ...] = ()  # whose callers it serves; empty: the broker's own account

    @property
    def client(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Config:
    path: Path | None  # the config file read, or None when there was none
    policy_path: Path | None
    pagerduty: PagerDutySettings
    store: StoreSettings
    audit: AuditSettings
    notify: NotifySettings
    broker: BrokerSettings = BrokerSettings()

    @property
    def audit_path(self) -> Path:
        return self.audit.path

    def require_policy_path(self) -> Path:
        if self.policy_path is None:
            where = self.path or default_config_path()
            raise ConfigError(
                "no policy configured",
                f'set policy = "policies" in {where} or export JITCTL_POLICY=PATH',
            )
        return self.policy_path


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (if any) and apply environment overrides."""
    env = os.environ if env is None else env
    explicit = env.get("JITCTL_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_path()
    data: dict[str, Any] = {}
    inline = env.get("JITCTL_CONFIG_TOML")  # the broker under Lambda: the config as text
    try:
        found = not inline and path.is_file()
    except OSError as exc:  # e.g. a name too long to look up: bad input, not a bug
        raise ConfigError(
            f"cannot use config file {clean(str(path))[:200]}: {exc.strerror}"
        ) from None
    if inline:
        data = _parse_toml(inline, "JITCTL_CONFIG_TOML")
        path = None
    elif found:
        data = _read_toml(path)
    elif explicit:
        raise ConfigError(
            f"config file {path} does not exist", "fix JITCTL_CONFIG or create the file"
        )
    else:
        path = None  # no config file: defaults and environment only
    base = path.parent if path else Path.cwd()
    where = str(path) if path else "config"
    _check(data, _TOP_KEYS, where)
    for section, keys in _SECTION_KEYS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        _check(value, keys, f"{where} [{section}]")

    pd = data.get("pagerduty", {})
    store = data.get("store", {})
    audit = data.get("audit", {})
    notify = data.get("notify", {})

    policy = env.get("JITCTL_POLICY") or _opt_str(data, "policy", where)
    policy_path = _resolve(policy, Path.cwd() if env.get("JITCTL_POLICY") else base)

    ca = env.get("JITCTL_PAGERDUTY_CA_BUNDLE") or _opt_str(pd, "ca_bundle", where)
    pagerduty = PagerDutySettings(
        url=(
            env.get("JITCTL_PAGERDUTY_URL") or _opt_str(pd, "url", where) or DEFAULT_PAGERDUTY_URL
        ).rstrip("/"),
        ca_bundle=_resolve(ca, Path.cwd() if env.get("JITCTL_PAGERDUTY_CA_BUNDLE") else base),
        timeout=_seconds(
            pd.get("timeout"), f"{where} [pagerduty] timeout", DEFAULT_PAGERDUTY_TIMEOUT
        ),
        token_secret=_opt_str(pd, "token_secret", where),
    )
    _check_url(pagerduty.url, f"{where}: [pagerduty] url")

    backend = _opt_str(store, "backend", where) or "sqlite"
    if backend not in _BACKENDS:
        raise ConfigError(
            f"{where}: [store] backend {backend!r} is not one of {', '.join(_BACKENDS)}"
        )
    table = _opt_str(store, "table", where)
    require_store_table(backend, table, where)
    store_settings = StoreSettings(
        backend=backend,
        path=_resolve(_opt_str(store, "path", where), base),
        table=table,
        region=_opt_str(store, "region", where),
    )

    audit_raw = env.get("JITCTL_AUDIT_LOG") or _opt_str(audit, "path", where)
    audit_path = _resolve(audit_raw, Path.cwd() if env.get("JITCTL_AUDIT_LOG") else base)
    required = audit.get("required", True)
    if not isinstance(required, bool):
        raise ConfigError(f"{where} [audit]: required must be true or false")
    audit_settings = AuditSettings(
        path=audit_path or default_data_dir() / "audit.jsonl",
        table=_opt_str(audit, "table", where),
        bucket=_opt_str(audit, "bucket", where),
        prefix=_opt_str(audit, "prefix", where) or "jitctl-audit/",
        required=required,
        region=_opt_str(audit, "region", where),
        kms_key=_opt_str(audit, "kms_key", where),
        retention_days=_retention_days(audit.get("retention_days"), where),
        retention_mode=_retention_mode(audit.get("retention_mode"), where),
    )
    webhook = _opt_str(notify, "webhook_url", where)
    if webhook:
        _check_url(webhook, f"{where}: [notify] webhook_url")
    notify_settings = NotifySettings(
        webhook_url=webhook,
        timeout=_seconds(notify.get("timeout"), f"{where} [notify] timeout", 5.0),
    )
    return Config(
        path=path,
        policy_path=policy_path,
        pagerduty=pagerduty,
        store=store_settings,
        audit=audit_settings,
        notify=notify_settings,
        broker=_broker(data.get("broker", {}), env, base, where),
    )


def _broker(raw: dict[str, Any], env: Mapping[str, str], base: Path, where: str) -> BrokerSettings:
    url = (env.get("JITCTL_BROKER_URL") or _opt_str(raw, "url", where) or "").rstrip("/") or None
    server_id = env.get("JITCTL_BROKER_SERVER_ID") or _opt_str(raw, "server_id", where)
    if url is not None:
        _check_broker_url(url, where)
        if not server_id:
            raise ConfigError(
                f"{where}: [broker] url is set but server_id is not",
                "ask whoever runs the broker for its server_id",
            )
    ca = env.get("JITCTL_BROKER_CA_BUNDLE") or _opt_str(raw, "ca_bundle", where)
    sts_endpoint = (_opt_str(raw, "sts_endpoint", where) or DEFAULT_STS_ENDPOINT).rstrip("/")
    return BrokerSettings(
        url=url,
        server_id=server_id,
        sts_endpoint=sts_endpoint,
        sts_region=_opt_str(raw, "sts_region", where) or _sts_region(sts_endpoint),
        ca_bundle=_resolve(ca, Path.cwd() if env.get("JITCTL_BROKER_CA_BUNDLE") else base),
        nonce_table=_opt_str(raw, "nonce_table", where),
        timeout=_seconds(raw.get("timeout"), f"{where} [broker] timeout", 30.0),
        role_arn=_opt_str(raw, "role_arn", where),
        accounts=_accounts(raw.get("accounts"), where),
    )


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


def _sts_region(endpoint: str) -> str:
    """The signing region of an STS endpoint: sts.REGION.amazonaws.com, else us-east-1 (the
    global endpoint's, and a local test endpoint's)."""
    import re

    found = re.match(r"https://sts\.([a-z]{2}(?:-[a-z0-9]+)+)\.amazonaws\.com", endpoint)
    return found.group(1) if found else "us-east-1"


def _check_broker_url(url: str, where: str) -> None:
    """https, or plain http only to a loopback address (a broker on this machine, tests)."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and loopback:
        return
    raise ConfigError(
        f"{where}: [broker] url {url!r} must be https (plain http only on a loopback address)"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        return parse_toml(raw)[0]
    except TomlError as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return parse_toml(text.encode("utf-8", "surrogateescape"))[0]
    except TomlError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


def _check(table: dict[str, Any], allowed: set[str], where: str) -> None:
    key = first_unknown_key(table, allowed)
    if key is not None:
        raise ConfigError(unknown_key_message(key, allowed, where))


def _opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def _check_url(url: str, what: str) -> None:
    """An http(s) URL urllib can use: what fails here would otherwise fail on every use."""
    from urllib.parse import urlsplit

    if not is_valid_text(url):  # from the environment: undecodable bytes
        raise ConfigError(f"{what} '{clean(url)}' is not valid UTF-8")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as exc:
        raise ConfigError(f"{what} {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"{what} {url!r} is not an http(s) URL", "e.g. https://hooks.example.com/..."
        )


def _resolve(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _retention_days(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= _RETENTION_MAX_DAYS:
        raise ConfigError(
            f"{where} [audit]: retention_days must be a whole number of days "
            f"from 1 to {_RETENTION_MAX_DAYS}",
            "e.g. retention_days = 400",
        )
    return value


def _retention_mode(value: Any, where: str) -> str:
    if value is None:
        return RETENTION_MODES[0]
    if value not in RETENTION_MODES:
        raise ConfigError(
            f"{where} [audit]: retention_mode must be one of {', '.join(RETENTION_MODES)}",
            "COMPLIANCE: nobody can shorten it; GOVERNANCE: s3:BypassGovernanceRetention can",
        )
    return str(value)


def _seconds(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
