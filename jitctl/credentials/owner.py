"""Whose cached grant: the credential cache belongs to one principal under one config.

Two people may share one OS account (the demo's personas do, and so does a shared jump
host), and one person may use two configs (two brokers, a test store). A cached grant is
kept, and found, under (config identity, caller, role): `credential-process` and `exec`
only ever see a grant that the current caller got under the current config.

- config identity: the broker (url and server id) in broker mode; the store (the SQLite
  file's real path, or the DynamoDB table and region) in direct mode.
- the caller: the principal ARN that sts:GetCallerIdentity returns for the current AWS
  credentials (in broker mode, as the broker verified it from the call's proof; it holds the
  account); never a name anyone typed. A person known by two
  principals (an IAM user and an SSO session) has two caches: stricter, never looser.

With no config at all (no file, no inline config, no broker, no policy) there is nothing a
grant could have been issued under: exit 2.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jitctl.errors import ConfigError

if TYPE_CHECKING:
    from jitctl.config.settings import Config

CACHE_DIR_ENV = "JITCTL_CACHE_DIR"  # where the cache files go (the demo's personas: each its own)


@dataclass(frozen=True)
class CacheOwner:
    """Under which config, and for which principal, grants are cached."""

    config: str
    principal: str

    def slot(self, role: str) -> str:
        """The name a grant of ``role`` is kept under: a digest, so no part of it is a path."""
        text = json.dumps([self.config, self.principal, role])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def as_dict(self) -> dict[str, str]:
        return {"config": self.config, "principal": self.principal}


def config_identity(config: Config, environ: dict[str, str] | None = None) -> str:
    """The broker, or the store, this config issues through; ConfigError without a config."""
    inline = bool((environ or {}).get("JITCTL_CONFIG_TOML"))
    if not (config.path or inline or config.broker.client or config.policy_path):
        raise ConfigError(
            "no jitctl config: cached grants belong to the config they were issued under",
            "set JITCTL_CONFIG (or create the default config.toml), as for `jitctl request`",
        )
    if config.broker.client:
        return f"broker {config.broker.url} {config.broker.server_id}"
    store = config.store
    if store.backend == "dynamodb":
        return f"dynamodb {store.table} {store.region or ''}"
    from jitctl.config.settings import default_data_dir

    path = Path(store.path or default_data_dir() / "requests.db").expanduser()
    return f"{store.backend} {os.path.realpath(path)}"



def cache_dir(environ: dict[str, str]) -> Path | None:
    """``$JITCTL_CACHE_DIR`` if set (None: platformdirs' user cache dir)."""
    value = environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else None
