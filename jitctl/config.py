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
    },
}
DEFAULT_STS_ENDPOINT = "https://sts.us-east-1.amazonaws.com"
_BACKENDS = ("sqlite", "dynamodb")
RETENTION_MODES = ("COMPLIANCE", "GOVERNANCE")  # S3 Object Lock modes
_RETENTION_MAX_DAYS = 36500  # S3's own limit is 100 years
_Table = dict[str, Any]  # a table of the config file


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
    data, path = _read_source(env)
    base = path.parent if path else Path.cwd()
    where = str(path) if path else "config"
    _check(data, _TOP_KEYS, where)  # unknown keys and non-tables fail before any value is read
    for section, keys in _SECTION_KEYS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        _check(value, keys, f"{where} [{section}]")
    # Keyword arguments run left to right: a bad file reports its first problem first.
    return Config(
        path=path,
        policy_path=_path_setting(env, "JITCTL_POLICY", data, "policy", base, where),
        pagerduty=_pagerduty(data.get("pagerduty", {}), env, base, where),
        store=_store(data.get("store", {}), base, where),
        audit=_audit(data.get("audit", {}), env, base, where),
        notify=_notify(data.get("notify", {}), where),
        broker=_broker(data.get("broker", {}), env, base, where),
    )


def _read_source(env: Mapping[str, str]) -> tuple[dict[str, Any], Path | None]:
    """The config as data, and the file it came from (None: inline text or no file)."""
    explicit = env.get("JITCTL_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_path()
    if inline := env.get("JITCTL_CONFIG_TOML"):  # the broker under Lambda: config as text
        return _parse_toml(inline, "JITCTL_CONFIG_TOML"), None
    if path.is_file():
        return _read_toml(path), path
    if explicit:  # a file asked for by name must exist; the default one may not
        raise ConfigError(
            f"config file {path} does not exist", "fix JITCTL_CONFIG or create the file"
        )
    return {}, None  # no config file: defaults and environment only


def _path_setting(
    env: Mapping[str, str], var: str, table: _Table, key: str, base: Path, where: str
) -> Path | None:
    """The variable wins, relative to the working directory; the file's, to the config file."""
    if env.get(var):
        return _resolve(env[var], Path.cwd())
    return _resolve(_opt_str(table, key, where), base)


def _pagerduty(pd: _Table, env: Mapping[str, str], base: Path, where: str) -> PagerDutySettings:
    ca = _path_setting(env, "JITCTL_PAGERDUTY_CA_BUNDLE", pd, "ca_bundle", base, where)
    url = env.get("JITCTL_PAGERDUTY_URL") or _opt_str(pd, "url", where) or DEFAULT_PAGERDUTY_URL
    pagerduty = PagerDutySettings(
        url=url.rstrip("/"),
        ca_bundle=ca,
        timeout=_seconds(
            pd.get("timeout"), f"{where} [pagerduty] timeout", DEFAULT_PAGERDUTY_TIMEOUT
        ),
        token_secret=_opt_str(pd, "token_secret", where),
    )
    _check_url(pagerduty.url, f"{where}: [pagerduty] url")
    return pagerduty


def _store(store: dict[str, Any], base: Path, where: str) -> StoreSettings:
    backend = _opt_str(store, "backend", where) or "sqlite"
    if backend not in _BACKENDS:
        raise ConfigError(
            f"{where}: [store] backend {backend!r} is not one of {', '.join(_BACKENDS)}"
        )
    table = _opt_str(store, "table", where)
    if backend == "dynamodb" and not table:
        raise ConfigError(f'{where}: [store] backend "dynamodb" needs table = "NAME"')
    return StoreSettings(
        backend=backend,
        path=_resolve(_opt_str(store, "path", where), base),
        table=table,
        region=_opt_str(store, "region", where),
    )


def _audit(audit: dict[str, Any], env: Mapping[str, str], base: Path, where: str) -> AuditSettings:
    audit_path = _path_setting(env, "JITCTL_AUDIT_LOG", audit, "path", base, where)
    required = audit.get("required", True)
    if not isinstance(required, bool):
        raise ConfigError(f"{where} [audit]: required must be true or false")
    return AuditSettings(
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


def _notify(notify: dict[str, Any], where: str) -> NotifySettings:
    webhook = _opt_str(notify, "webhook_url", where)
    if webhook:
        _check_url(webhook, f"{where}: [notify] webhook_url")
    return NotifySettings(
        webhook_url=webhook,
        timeout=_seconds(notify.get("timeout"), f"{where} [notify] timeout", 5.0),
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
    ca = _path_setting(env, "JITCTL_BROKER_CA_BUNDLE", raw, "ca_bundle", base, where)
    sts_endpoint = (_opt_str(raw, "sts_endpoint", where) or DEFAULT_STS_ENDPOINT).rstrip("/")
    return BrokerSettings(
        url=url,
        server_id=server_id,
        sts_endpoint=sts_endpoint,
        sts_region=_opt_str(raw, "sts_region", where) or _sts_region(sts_endpoint),
        ca_bundle=ca,
        nonce_table=_opt_str(raw, "nonce_table", where),
        timeout=_seconds(raw.get("timeout"), f"{where} [broker] timeout", 30.0),
        role_arn=_opt_str(raw, "role_arn", where),
    )


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
    if (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and loopback):
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
