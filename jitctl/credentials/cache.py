"""The local cache of the latest credentials per role, for `jitctl credential-process ROLE`.

A cache belongs to one owner (jitctl.credentials.owner: the caller's principal under one
config) and keeps one grant per role: the entry's name is a digest of (config, principal,
role), and the record carries its owner, which must match when it is read. So two people who
share an OS account, or one person under two configs, never get each other's grants. (The
OS user stays the boundary against a hostile reader: whoever can read this user's keyring or
0600 files can read every entry.)

Where: the OS keyring (service ``jitctl-credentials``, username ``ROLE DIGEST``) when a real
backend works; otherwise a 0600 JSON file in ``<cache dir>/credentials/`` (0700). Secrets
never go into a log, an exception message or a repr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jitctl.credentials.owner import CacheOwner
from jitctl.filelock import atomic_write, exclusive_lock, remove_stale_temps
from jitctl.models import Credentials
from jitctl.timeutil import parse_rfc3339, rfc3339

SERVICE = "jitctl-credentials"
RECORD_VERSION = 2  # 2: records carry their owner (version 1, keyed by role alone, is ignored)
# An SDK refreshes at 15 (advisory) and 10 (mandatory) minutes before expiry, running the
# process again; 5 minutes is the least that still leaves a long command time to finish.
MIN_LEFT = timedelta(minutes=5)
_LOCK_TIMEOUT = 10.0  # seconds; credential-process must fail, not hang
PROBE_TTL = timedelta(days=1)  # how long "no usable keyring here" is remembered
_MAX_FILE_BYTES = 64 * 1024  # a record is ~2 KB; anything huge is not ours
KEYRING = "keyring"
OWNER_KEYS = ("config", "principal")
FILE = "file"


@dataclass(frozen=True)
class CachedGrant:
    role: str
    request_id: str
    creds: Credentials  # its repr hides the secrets
    person: str | None = None
    owner: CacheOwner | None = None


@dataclass(frozen=True)
class CacheLookup:
    """What ``lookup`` found: the grant (or None), where, and anything it had to ignore."""

    grant: CachedGrant | None
    source: str | None  # KEYRING or FILE
    problems: tuple[str, ...] = ()


def fresh(grant: CachedGrant, now: datetime, min_left: timedelta = MIN_LEFT) -> bool:
    """True while the credentials have at least ``min_left`` to run (exactly ``min_left`` counts).

    Credentials without a known expiration are never fresh: handing them to an SDK without
    an Expiration would make it cache them forever.
    """
    expiration = grant.creds.expiration
    return expiration is not None and expiration - now >= min_left


class CredentialCache:
    """Latest grant per role for ``owner`` (the caller under the current config).

    ``keyring_backend``: a ``keyring.backend.KeyringBackend`` to use (tests pass in-memory or
    failing ones); None means the system's default, looked up on first use. ``cache_dir``:
    jitctl's cache directory (default: platformdirs' user cache dir); files go in
    ``credentials/`` under it.
    """

    def __init__(
        self, owner: CacheOwner, keyring_backend: Any | None = None, cache_dir: Path | None = None
    ) -> None:
        self.owner = owner
        self._given_backend = keyring_backend
        self._backend: Any | None = None
        self._backend_problem: str | None = None
        self._resolved = False
        self._cache_dir = cache_dir

    # --- public ---------------------------------------------------------------------------

    def file_path(self, role: str) -> Path:
        """The fallback file for ``role``, named by the owner's digest (jitctl.credentials.owner)."""
        return self._base_dir() / "credentials" / f"{self.owner.slot(role)}.json"

    def _username(self, role: str) -> str:
        """The keyring entry's name: the role for people to read, the digest to keep owners apart."""
        return f"{role} {self.owner.slot(role)}"

    def _base_dir(self) -> Path:
        if self._cache_dir is not None:
            return self._cache_dir
        from jitctl.config.settings import default_cache_dir

        return default_cache_dir()

    def store(
        self, role: str, creds: Credentials, request_id: str, person: str | None = None
    ) -> str:
        """Cache ``creds`` as the latest grant for ``role``; returns where (KEYRING or FILE)."""
        value = _encode(CachedGrant(role, request_id, creds, person, self.owner))
        backend = self._usable_backend()
        if backend is not None:
            try:
                backend.set_password(SERVICE, self._username(role), value)
                # Read back: some backends accept a write and keep nothing.
                if backend.get_password(SERVICE, self._username(role)) == value:
                    self._remove_file(role)  # no second, stale copy of secrets on disk
                    return KEYRING
            except Exception:  # any backend failure (locked, D-Bus gone, ...): use the file
                pass
        path = self.file_path(role)
        with exclusive_lock(path, timeout=_LOCK_TIMEOUT):
            remove_stale_temps(path)  # secrets left by writers killed mid-write
            atomic_write(path, value.encode("utf-8"), 0o600)
        return FILE

    def load(self, role: str) -> CachedGrant | None:
        return self.lookup(role).grant

    def lookup(self, role: str) -> CacheLookup:
        """The latest cached grant for ``role``, from the keyring or the file.

        Both are read: after a keyring failure a newer grant may be in the file while an
        older one is still in the keyring. The one that expires last wins. Anything corrupt
        or unreadable is reported in ``problems`` and treated as absent, never raised.
        """
        problems: list[str] = []
        found: list[tuple[CachedGrant, str]] = []
        backend = self._usable_backend()
        if backend is not None:
            try:
                text = backend.get_password(SERVICE, self._username(role))
            except Exception as exc:
                text = None
                problems.append(f"could not read the keyring ({type(exc).__name__})")
            if text is not None:
                self._collect(text, role, KEYRING, "keyring entry", found, problems)
        path = self.file_path(role)
        text = _read_file(path, problems)
        if text is not None:
            self._collect(text, role, FILE, f"cache file {path}", found, problems)
        if not found:
            return CacheLookup(None, None, tuple(problems))
        grant, source = max(found, key=lambda item: _expiry_key(item[0]))
        return CacheLookup(grant, source, tuple(problems))

    def remove(self, role: str) -> bool:
        """Forget ``role``'s grant everywhere; True if there was one."""
        removed = False
        backend = self._usable_backend()
        if backend is not None:
            try:
                if backend.get_password(SERVICE, self._username(role)) is not None:
                    backend.delete_password(SERVICE, self._username(role))
                    removed = True
            except Exception:  # PasswordDeleteError, locked keyring, ...: nothing to remove
                pass
        return self._remove_file(role) or removed

    @property
    def keyring_problem(self) -> str | None:
        """Why the keyring is not used (None if it is, or has not been looked at yet)."""
        return self._backend_problem

    # --- internals ------------------------------------------------------------------------

    def _usable_backend(self) -> Any | None:
        if not self._resolved:
            self._resolved = True
            backend = self._given_backend
            if backend is None:
                remembered = self._remembered_problem()
                if remembered is not None:
                    self._backend_problem = remembered
                    return None
                try:
                    import keyring

                    backend = keyring.get_keyring()
                except Exception as exc:  # a broken keyring config must not break us
                    self._backend_problem = f"keyring unavailable ({type(exc).__name__})"
                    self._remember_problem(self._backend_problem)
                    return None
            self._backend_problem = _unusable_reason(backend)
            self._backend = None if self._backend_problem else backend
            if self._given_backend is None and self._backend_problem:
                self._remember_problem(self._backend_problem)
        return self._backend

    # Finding keyring's backend imports every backend it knows (on Linux, the macOS one probes
    # for a library in a subprocess): about 180 ms, on every grant and every SDK call through
    # credential-process. A machine with no usable keyring remembers that for PROBE_TTL in a
    # small, non-secret file; a different PYTHON_KEYRING_BACKEND, or a day, asks again.
    def _probe_path(self) -> Path:
        return self._base_dir() / "keyring-probe.json"

    def _remembered_problem(self) -> str | None:
        import os
        import time

        try:
            probe = json.loads(self._probe_path().read_text(encoding="utf-8"))
            fresh = 0 <= time.time() - float(probe["checked"]) < PROBE_TTL.total_seconds()
            same = probe.get("backend_env") == os.environ.get("PYTHON_KEYRING_BACKEND")
            return f"{probe['problem']} (checked earlier)" if fresh and same else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember_problem(self, problem: str) -> None:
        import os
        import time

        record = {
            "problem": problem,
            "checked": time.time(),
            "backend_env": os.environ.get("PYTHON_KEYRING_BACKEND"),
        }
        try:
            atomic_write(self._probe_path(), json.dumps(record).encode("utf-8"), 0o600)
        except OSError:
            pass  # only an optimisation: the next run asks keyring again

    def _remove_file(self, role: str) -> bool:
        path = self.file_path(role)
        if not path.exists():
            return False
        with exclusive_lock(path, timeout=_LOCK_TIMEOUT):
            remove_stale_temps(path)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True

    def _collect(
        self,
        text: str,
        role: str,
        source: str,
        where: str,
        found: list[tuple[CachedGrant, str]],
        problems: list[str],
    ) -> None:
        try:
            grant = _decode(text)
        except ValueError as exc:
            problems.append(f"ignored unreadable {where}: {exc}")
            return
        if grant.role != role:
            problems.append(f"ignored {where}: it is for role {grant.role!r}, not {role!r}")
            return
        if grant.owner != self.owner:
            problems.append(f"ignored {where}: it was cached for another caller or config")
            return
        found.append((grant, source))


def _unusable_reason(backend: Any) -> str | None:
    """Why ``backend`` cannot hold our credentials, or None if it looks like a real one."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        return "no keyring backend is available"
    if isinstance(backend, null.Keyring):
        return "the keyring backend is the null keyring (it stores nothing)"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return "the keyring chainer has no backends to chain"
    return None


def _encode(grant: CachedGrant) -> str:
    creds = grant.creds
    return json.dumps(
        {
            "version": RECORD_VERSION,
            "role": grant.role,
            "request_id": grant.request_id,
            "person": grant.person,
            "owner": grant.owner.as_dict() if grant.owner else None,
            "access_key_id": creds.access_key_id,
            "secret_access_key": creds.secret_access_key,
            "session_token": creds.session_token,
            "expiration": rfc3339(creds.expiration) if creds.expiration is not None else None,
        },
        sort_keys=True,
    )


def _decode(text: str) -> CachedGrant:
    """Parse a record; ValueError with a reason that never quotes the record (it has secrets)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("not valid JSON") from None  # the error carries the text: drop it
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("version") != RECORD_VERSION:
        raise ValueError(f"unsupported record version {doc.get('version')!r:.20}")
    fields: dict[str, str] = {}
    for key in ("role", "request_id", "access_key_id", "secret_access_key", "session_token"):
        value = doc.get(key)
        if not isinstance(value, str) or not value:
            raise ValueError(f"missing or empty {key}")
        fields[key] = value
    person = doc.get("person")
    if person is not None and not isinstance(person, str):
        raise ValueError("person is not a string")
    owner = doc.get("owner")
    if not (isinstance(owner, dict) and all(isinstance(owner.get(k), str) for k in OWNER_KEYS)):
        raise ValueError("no owner (config and principal)")
    raw_expiration = doc.get("expiration")
    expiration = None
    if raw_expiration is not None:
        try:
            expiration = parse_rfc3339(raw_expiration)
        except (TypeError, ValueError, AttributeError):
            raise ValueError("expiration is not an RFC 3339 timestamp") from None
    creds = Credentials(
        fields["access_key_id"], fields["secret_access_key"], fields["session_token"], expiration
    )
    owned = CacheOwner(owner["config"], owner["principal"])
    return CachedGrant(fields["role"], fields["request_id"], creds, person, owned)


def _read_file(path: Path, problems: list[str]) -> str | None:
    # No lock: writers replace the file atomically, so a reader sees one whole version.
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(f"could not read cache file {path}: {exc.strerror or type(exc).__name__}")
        return None
    if len(data) > _MAX_FILE_BYTES:
        problems.append(f"ignored cache file {path}: larger than {_MAX_FILE_BYTES} bytes")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"ignored unreadable cache file {path}: not UTF-8")
        return None


def _expiry_key(grant: CachedGrant) -> float:
    expiration = grant.creds.expiration
    return expiration.timestamp() if expiration is not None else float("-inf")


__all__ = [
    "FILE",
    "KEYRING",
    "MIN_LEFT",
    "SERVICE",
    "CacheLookup",
    "CachedGrant",
    "CredentialCache",
    "fresh",
]
