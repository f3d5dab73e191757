"""Reading one value of the config file: strings, paths, durations (shared by its sections)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jitctl.errors import ConfigError
from jitctl.timeutil import parse_duration

Table = dict[str, Any]  # a table of the config file


def path_setting(
    env: Mapping[str, str], var: str, table: Table, key: str, base: Path, where: str
) -> Path | None:
    """The variable wins, relative to the working directory; the file's, to the config file."""
    if env.get(var):
        return resolve(env[var], Path.cwd())
    return resolve(opt_str(table, key, where), base)


def source(env: Mapping[str, str], var: str, where: str, setting: str) -> str:
    """Where a setting's value came from, for its errors: the variable when it is set (it
    wins over the file), else the config file's key."""
    return f"${var} (for {setting})" if env.get(var) else f"{where}: {setting}"


def opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value


def resolve(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def seconds(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def https_or_loopback(url: str) -> bool:
    """An https URL with a host, or plain http only to a loopback address (a service on this
    machine, tests): where jitctl sends a proof or credentials, nothing else is safe."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return (parts.scheme == "https" and bool(parts.hostname)) or (
        parts.scheme == "http" and loopback
    )
