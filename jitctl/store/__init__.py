"""Where access requests live: one interface (``RequestStore``), two backends.

``open_store(settings, data_dir=..., client_factory=...)`` returns the configured one:
SQLite (the default, one host) or DynamoDB (shared by a team). Both enforce the same
state machine, atomically; see ``jitctl.store.base``.
"""

from __future__ import annotations

from jitctl.store.base import (
    DuplicateRequest,
    NotFound,
    RequestExpired,
    RequestStore,
    StoreError,
    TransitionError,
    open_store,
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
