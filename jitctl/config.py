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

_TOP_KEYS = {"policy", "pagerduty", "store", "audit", "notify"}
_SECTION_KEYS = {
    "pagerduty": {"url", "ca_bundle", "timeout"},
    "store": {"backend", "path", "table", "region"},
    "audit": {"path", "table", "bucket", "prefix", "required", "region"},
    "notify": {"webhook_url", "timeout"},
}
_BACKENDS = ("sqlite", "dynamodb")


@dataclass(frozen=True)
class PagerDutySettings:
    url: str = DEFAULT_PAGERDUTY_URL
    ca_bundle: Path | None = None
    timeout: float = DEFAULT_PAGERDUTY_TIMEOUT


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
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long to look up: bad input, not a bug
        raise ConfigError(
            f"cannot use config file {clean(str(path))[:200]}: {exc.strerror}"
        ) from None
    if found:
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
    )
    _check_url(pagerduty.url, f"{where}: [pagerduty] url")

    backend = _opt_str(store, "backend", where) or "sqlite"
    if backend not in _BACKENDS:
        raise ConfigError(
            f"{where}: [store] backend {backend!r} is not one of {', '.join(_BACKENDS)}"
        )
    table = _opt_str(store, "table", where)
    if backend == "dynamodb" and not table:
        raise ConfigError(f'{where}: [store] backend "dynamodb" needs table = "NAME"')
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


def _seconds(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
