"""What IAM records of a role (iam:GetRole), for the identity rule (jitctl.identity.rule), cached.

A record is kept under the role's ARN and the unique id the caller's session names, and only
when IAM's answer carries that id. IAM never reuses a role id and never changes a role's path,
so a kept record stays true; a role deleted and made again under the same name has a new id,
so its sessions find nothing kept and IAM is asked again. Kept in the process (the broker asks
IAM once per role) and, in direct mode, in a 0600 file in the cache directory (once per role
per machine). Direct mode is advice, never a gate (the requester's keys could write the store
too): that file is read only if it is the user's own and nobody else may write it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitctl.errors import IdentityError, UsageError
from jitctl.identity.rule import Principal, RoleRecord

if TYPE_CHECKING:
    pass

CACHE_FILE = "iam-roles.json"
_VERSION = 1


class RoleFacts:
    """``lookup`` is a ``jitctl.identity.rule.RoleLookup``: IAM's record of a session's role."""

    def __init__(
        self,
        iam: Callable[[], Any],
        account: Callable[[], str],
        *,
        asker: str,
        fix: str,
        path: Path | None = None,
    ) -> None:
        """``iam`` makes the IAM client, ``account`` is the account its credentials are in;
        ``asker`` names those credentials and ``fix`` says how they get iam:GetRole, for the
        error when they may not; ``path``: the file that keeps records across runs."""
        self._iam, self._account = iam, account
        self._asker, self._fix, self._path = asker, fix, path
        self._kept: dict[str, RoleRecord] = {}

    def lookup(self, principal: Principal, role_id: str) -> RoleRecord | None:
        key = f"{principal.role_arn} {role_id}"
        if key not in self._kept and self._path is not None:
            self._kept.update(_read(self._path))
        if key in self._kept:
            return self._kept[key]
        record = self._ask(principal)
        if record is not None and record.role_id == role_id:
            self._kept[key] = record
            if self._path is not None:
                _keep(self._path, key, record)
        return record

    def _ask(self, principal: Principal) -> RoleRecord | None:
        from jitctl.aws import DENIED, error_code, translate_error

        own = self._account()
        if principal.account != own:  # GetRole sees one account: another's role is not there
            raise IdentityError(
                f"cannot check role {principal.role_name} of account {principal.account} with "
                f"IAM: {self._asker} are in account {own}",
                _map_hint(principal),
            )
        try:
            role = self._iam().get_role(RoleName=principal.role_name)["Role"]
        except Exception as exc:
            code = error_code(exc)
            if code == "NoSuchEntity":
                return None
            if code in DENIED:
                raise IdentityError(
                    f"cannot check role {principal.role_arn} with IAM, which decides whether "
                    f"its session names name people: {self._asker} may not call iam:GetRole",
                    self._fix,
                ) from None
            raise translate_error(exc, f"cannot check role {principal.role_name} with IAM") from exc
        return RoleRecord(arn=str(role["Arn"]), role_id=str(role["RoleId"]), path=str(role["Path"]))


def _map_hint(p: Principal) -> str:
    arn = f"arn:{p.partition}:sts::{p.account}:assumed-role/{p.role_name}/{p.session_name}"
    return f'map the exact ARN in the policy: [identities] "{arn}" = "you@example.com"'


def _read(path: Path) -> dict[str, RoleRecord]:
    """The kept records; none when the file is missing, not the user's own, or not ours."""
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            if not _private(info):
                return {}
            doc = json.loads(f.read(1 << 20))
        entries = doc["roles"] if doc.get("version") == _VERSION else {}
        return {
            key: RoleRecord(arn=e["arn"], role_id=e["role_id"], path=e["path"])
            for key, e in entries.items()
            if all(isinstance(e.get(f), str) for f in ("arn", "role_id", "path"))
        }
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}  # a cache: whatever is wrong with it, IAM is asked instead


def _private(info: os.stat_result) -> bool:
    """A regular file of this user that nobody else may write."""
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISREG(info.st_mode) and mine and not info.st_mode & 0o022


def _keep(path: Path, key: str, record: RoleRecord) -> None:
    """Add one record to the file (0600, atomically, under its lock); best effort."""
    from jitctl.filelock import atomic_write, exclusive_lock, remove_stale_temps

    try:
        with exclusive_lock(path, timeout=2):
            remove_stale_temps(path)
            kept = _read(path)
            kept[key] = record
            roles = {k: dataclasses.asdict(r) for k, r in kept.items()}
            data = json.dumps({"version": _VERSION, "roles": roles}, sort_keys=True)
            atomic_write(path, data.encode(), 0o600)
    except (OSError, UsageError, ValueError):  # UsageError: a symlinked lock file
        pass  # the answer stands; the next run asks IAM again

