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

from jitctl.config.broker import BROKER_KEYS, BrokerSettings, broker_settings
from jitctl.config.console import CONSOLE_KEYS, ConsoleSettings, console_settings
from jitctl.config.identity_center import (
    IDENTITY_CENTER_KEYS,
    IdentityCenterSettings,
    identity_center_settings,
)
from jitctl.config.slack import SLACK_KEYS, SlackSettings, slack_settings
from jitctl.config.tomlcheck import TomlError, first_unknown_key, parse_toml, unknown_key_message
from jitctl.config.values import opt_str as _opt_str
from jitctl.config.values import path_setting as _path_setting
from jitctl.config.values import resolve as _resolve
from jitctl.config.values import seconds as _seconds
from jitctl.config.values import source
from jitctl.errors import ConfigError
from jitctl.sanitize import clean, is_valid_text

APP_NAME = "jitctl"
DEFAULT_PAGERDUTY_URL = "https://api.pagerduty.com"
DEFAULT_PAGERDUTY_TIMEOUT = 10.0  # seconds for the whole on-call lookup, retries included

_TOP_KEYS = {
    "policy",
    "pagerduty",
    "store",
    "audit",
    "notify",
    "broker",
    "console",
    "identity_center",
    "slack",
}
_AUDIT_KEYS = {"path", "table", "bucket", "prefix", "required", "region"} | {
    "kms_key",  # central records are signed (jitctl.audit.signing)
    "retention_days",  # S3 Object Lock retention of each central record
    "retention_mode",
}
_SECTION_KEYS = {
    "pagerduty": {"url", "ca_bundle", "timeout", "token_secret", "from"},
    "store": {"backend", "path", "table", "region"},
    "audit": _AUDIT_KEYS,
    "notify": {"webhook_url", "timeout"},
    "broker": BROKER_KEYS,
    "console": CONSOLE_KEYS,
    "slack": SLACK_KEYS,
    "identity_center": IDENTITY_CENTER_KEYS,
}
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
    sender: str | None = None  # [pagerduty] from: the From of incident writes (notes, pages)


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
class Config:
    path: Path | None  # the config file read, or None when there was none
    policy_path: Path | None
    pagerduty: PagerDutySettings
    store: StoreSettings
    audit: AuditSettings
    notify: NotifySettings
    broker: BrokerSettings = BrokerSettings()
    console: ConsoleSettings = ConsoleSettings()
    slack: SlackSettings = SlackSettings()
    identity_center: IdentityCenterSettings = IdentityCenterSettings()

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
        broker=broker_settings(data.get("broker", {}), env, base, where),
        console=console_settings(data.get("console", {}), env, where),
        slack=slack_settings(data.get("slack", {}), env, base, where),
        identity_center=identity_center_settings(data.get("identity_center", {}), where),
    )


def _read_source(env: Mapping[str, str]) -> tuple[dict[str, Any], Path | None]:
    """The config as data, and the file it came from (None: inline text or no file)."""
    explicit = env.get("JITCTL_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_path()
    if inline := env.get("JITCTL_CONFIG_TOML"):  # the broker under Lambda: config as text
        return _parse_toml(inline, "JITCTL_CONFIG_TOML"), None
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long to look up: bad input, not a bug
        raise ConfigError(
            f"cannot use config file {clean(str(path))[:200]}: {exc.strerror}"
        ) from None
    if found:
        return _read_toml(path), path
    if explicit:  # a file asked for by name must exist; the default one may not
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"config file {path} (from $JITCTL_CONFIG) {what}",
            "point JITCTL_CONFIG at the config.toml file, or create it",
        )
    return {}, None  # no config file: defaults and environment only


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
        sender=_opt_str(pd, "from", where),
    )
    what = source(env, "JITCTL_PAGERDUTY_URL", where, "[pagerduty] url")
    _check_url(pagerduty.url, what, "e.g. https://api.pagerduty.com")
    return pagerduty


def _store(store: dict[str, Any], base: Path, where: str) -> StoreSettings:
    backend = _opt_str(store, "backend", where) or "sqlite"
    if backend not in _BACKENDS:
        raise ConfigError(
            f"{where}: [store] backend {backend!r} is not one of {', '.join(_BACKENDS)}"
        )
    table = _opt_str(store, "table", where)
    require_store_table(backend, table, where)
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
        _check_url(webhook, f"{where}: [notify] webhook_url", "e.g. https://hooks.example.com/...")
    return NotifySettings(
        webhook_url=webhook,
        timeout=_seconds(notify.get("timeout"), f"{where} [notify] timeout", 5.0),
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


def _check_url(url: str, what: str, example: str) -> None:
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
        raise ConfigError(f"{what} {url!r} is not an http(s) URL", example)


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
