"""Where access requests live: one interface (``RequestStore``), two backends.

``open_store(settings, data_dir=..., client_factory=...)`` returns the configured one:
SQLite (the default, one host) or DynamoDB (shared by a team). Both enforce the same
state machine, atomically; see ``jitctl.store.base``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jitctl.config.settings import StoreSettings, require_store_table
from jitctl.errors import ConfigError
from jitctl.store.base import (
    DuplicateRequest,
    NotFound,
    RequestExpired,
    RequestStore,
    StoreError,
    TransitionError,
)

__all__ = [
    "DuplicateRequest",
    "NotFound",
    "RequestExpired",
    "RequestStore",
    "StoreError",
    "TransitionError",
    "open_store",
]


def open_store(
    settings: StoreSettings,
    *,
    data_dir: Path,
    client_factory: Callable[[str], Any] | None = None,
) -> RequestStore:
    """The configured backend. Nothing is touched (no file, no AWS call) until first use."""
    # Imported here: only one backend is needed, and neither pays for the other's imports.
    if settings.backend == "sqlite":
        from jitctl.store.sqlite import SqliteStore

        return SqliteStore(Path(settings.path or data_dir / "requests.db").expanduser())
    if settings.backend == "dynamodb":
        from jitctl.store.dynamodb import DynamoStore

        table = require_store_table(settings.backend, settings.table)
        if client_factory is None:  # one AWS client factory: the Environment's (AwsClients)
            raise ValueError("open_store needs a client_factory for DynamoDB")
        return DynamoStore(table, client_factory)
    raise ConfigError(f"[store] backend {settings.backend!r} is not one of sqlite, dynamodb")
