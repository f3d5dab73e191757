"""[identity_center]: which IAM Identity Center instance `identity_center` roles assign in.

Every key is optional when the account that issues (the broker's, or yours in direct mode)
has exactly one instance: `sso-admin:ListInstances` names it and its Identity Store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jitctl.config.values import opt_str, seconds
from jitctl.errors import ConfigError
from jitctl.sanitize import clean

IDENTITY_CENTER_KEYS = {"instance_arn", "identity_store_id", "region", "timeout"}
INSTANCE_ARN = re.compile(r"arn:aws[\w-]*:sso:::instance/(?:sso)?ins-[0-9a-zA-Z.-]{1,}", re.ASCII)
STORE_ID = re.compile(r"d-[0-9a-z]{10}|[0-9a-f-]{1,36}", re.ASCII)
DEFAULT_TIMEOUT = 120.0  # seconds AWS may take to report an assignment created or deleted


@dataclass(frozen=True)
class IdentityCenterSettings:
    instance_arn: str | None = None
    identity_store_id: str | None = None
    region: str | None = None  # the instance's region (sso-admin and identitystore calls)
    timeout: float = DEFAULT_TIMEOUT  # the bound on waiting for SUCCEEDED


def identity_center_settings(raw: dict[str, Any], where: str) -> IdentityCenterSettings:
    where = f"{where} [identity_center]"
    arn = opt_str(raw, "instance_arn", where)
    if arn is not None and not INSTANCE_ARN.fullmatch(arn):
        raise ConfigError(
            f"{where}: instance_arn {clean(arn)!r} is not an Identity Center instance ARN",
            "like arn:aws:sso:::instance/ssoins-1234567890abcdef (`aws sso-admin list-instances`)",
        )
    store = opt_str(raw, "identity_store_id", where)
    if store is not None and not STORE_ID.fullmatch(store):
        raise ConfigError(
            f"{where}: identity_store_id {clean(store)!r} is not an Identity Store id",
            "like d-1234567890 (`aws sso-admin list-instances`)",
        )
    timeout = seconds(raw.get("timeout"), f"{where} timeout", DEFAULT_TIMEOUT)
    if not 0 < timeout <= 900:
        raise ConfigError(f"{where}: timeout must be between 1s and 15m")
    region = opt_str(raw, "region", where)
    return IdentityCenterSettings(arn, store, region, timeout)
