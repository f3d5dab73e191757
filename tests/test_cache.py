"""The credential cache (keyring, else 0600 file) and `jitctl credential-process`'s core.

Keyrings here are our own small backends (in-memory, failing, silently dropping): the real
OS keyring is never touched. AWS is moto's server, used by a real boto3 process.
"""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, PasswordDeleteError

from jitctl.config.settings import default_cache_dir
from jitctl.credentials.cache import (
    FILE,
    KEYRING,
    SERVICE,
    CachedGrant,
    CredentialCache,
    fresh,
)
from jitctl.credentials.credproc import NoFreshCredentials, credential_process
from jitctl.credentials.owner import CacheOwner
from jitctl.errors import ExitCode
from jitctl.models import Credentials
from tests.conftest import clean_env

NOW = datetime(2026, 11, 21, 3, 0, 0, tzinfo=UTC)
ROLE = "prod-readonly"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
TOKEN = "FwoGZXIvYXdzEJr//////////TOKENVALUE"
OWNER = CacheOwner("sqlite /tmp/requests.db", "arn:aws:iam::123456789012:user/alice@example.com")
DAVE = CacheOwner("sqlite /tmp/requests.db", "arn:aws:iam::123456789012:user/dave@example.com")


def creds(expires: datetime | None = NOW + timedelta(hours=1), n: int = 1) -> Credentials:
    return Credentials(f"ASIA{n}KEY", f"{SECRET}{n}", f"{TOKEN}{n}", expires)  # type: ignore[arg-type]


# Test keyrings. priority < 0: keyring's own discovery never picks them as a default.
class MemoryKeyring(KeyringBackend):
    priority = -100  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.data:
            raise PasswordDeleteError("not found")
        del self.data[(service, username)]


class BrokenKeyring(KeyringBackend):
    """Fails every call, and (badly) puts what it was given into the error message."""

    priority = -100  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError(f"locked: {service} {username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError(f"cannot store {password}")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringError("locked")


class DroppingKeyring(MemoryKeyring):
    """Accepts writes and keeps nothing."""

    def set_password(self, service: str, username: str, password: str) -> None:
        return None


class EmptyChainer(chainer.ChainerBackend):
    backends = ()  # type: ignore[assignment]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keyring ---------------------------------------------------------------------------------


def test_keyring_round_trip_writes_nothing_to_disk(tmp_path):
    ring = MemoryKeyring()
    cache = CredentialCache(OWNER, ring, cache_dir=tmp_path / "cache")
    assert cache.store(ROLE, creds(), "req-1", person="alice@example.com") == KEYRING
    assert json.loads(ring.data[(SERVICE, f"{ROLE} {OWNER.slot(ROLE)}")])["request_id"] == "req-1"
    assert cache.load(ROLE) == CachedGrant(ROLE, "req-1", creds(), "alice@example.com", OWNER)
    assert cache.lookup(ROLE).source == KEYRING
    assert not (tmp_path / "cache").exists()
    assert cache.load("other-role") is None


def test_latest_store_wins(tmp_path):
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    cache.store(ROLE, creds(n=1), "req-1")
    cache.store(ROLE, creds(n=2), "req-2")
    grant = cache.load(ROLE)
    assert grant is not None and grant.request_id == "req-2" and grant.creds == creds(n=2)


def test_repr_never_shows_secrets(tmp_path):
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    cache.store(ROLE, creds(), "req-1")
    text = repr(cache.load(ROLE))
    assert "ASIA1KEY" in text and SECRET not in text and TOKEN not in text


# --- file fallback ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "known_useless"),
    [
        (BrokenKeyring(), False),  # looks real, fails in use
        (fail.Keyring(), True),
        (null.Keyring(), True),
        (EmptyChainer(), True),
        (DroppingKeyring(), False),  # looks real, caught by reading back
    ],
    ids=["raises", "fail", "null", "empty-chainer", "drops-writes"],
)
def test_unusable_keyring_falls_back_to_a_private_file(tmp_path, backend, known_useless):
    cache = CredentialCache(OWNER, backend, cache_dir=tmp_path / "cache")
    assert cache.store(ROLE, creds(), "req-1") == FILE
    assert (cache.keyring_problem is not None) == known_useless  # not even tried
    path = cache.file_path(ROLE)
    assert path == tmp_path / "cache" / "credentials" / (OWNER.slot("prod-readonly") + ".json")
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    found = cache.lookup(ROLE)
    assert found.grant == CachedGrant(ROLE, "req-1", creds(), None, OWNER) and found.source == FILE
    for problem in found.problems:  # a failing keyring is reported, never with a secret
        assert SECRET not in problem and TOKEN not in problem


def test_a_new_grant_in_a_working_keyring_removes_the_old_file(tmp_path):
    CredentialCache(OWNER, BrokenKeyring(), cache_dir=tmp_path).store(ROLE, creds(n=1), "req-1")
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    assert cache.file_path(ROLE).exists()
    assert cache.store(ROLE, creds(n=2), "req-2") == KEYRING
    assert not cache.file_path(ROLE).exists()  # no second copy of secrets left on disk


def test_a_crashed_writers_temp_file_is_gone_after_the_next_store(tmp_path):
    cache = CredentialCache(OWNER, fail.Keyring(), cache_dir=tmp_path)
    cache.store(ROLE, creds(n=1), "req-1")
    path = cache.file_path(ROLE)
    # What a writer killed between writing its temp and the rename leaves behind.
    stray = path.with_name(f".{path.name}.4242.0badc0de.tmp")
    stray.write_text(f"secret {SECRET}")
    other_role = path.with_name(".another.json.4242.0badc0de.tmp")
    other_role.write_text("another role's temp: its own writer clears it")
    cache.store(ROLE, creds(n=2), "req-2")
    assert not stray.exists() and other_role.exists()
    # The same when the keyring works again and the file goes.
    stray.write_text(f"secret {SECRET}")
    CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path).store(ROLE, creds(n=3), "req-3")
    assert not stray.exists() and not path.exists()


def test_the_grant_that_expires_last_wins_across_keyring_and_file(tmp_path):
    ring = MemoryKeyring()
    CredentialCache(OWNER, ring, cache_dir=tmp_path).store(
        ROLE, creds(NOW + timedelta(minutes=10)), "old"
    )
    # The keyring broke for a while: the newer grant went to the file.
    CredentialCache(OWNER, BrokenKeyring(), cache_dir=tmp_path).store(
        ROLE, creds(NOW + timedelta(hours=1)), "new"
    )
    found = CredentialCache(OWNER, ring, cache_dir=tmp_path).lookup(ROLE)
    assert found.grant is not None and found.grant.request_id == "new" and found.source == FILE


def test_default_location_is_the_user_cache_dir():
    cache = CredentialCache(OWNER, fail.Keyring())
    digest = OWNER.slot(ROLE)
    assert cache.file_path(ROLE) == default_cache_dir() / "credentials" / f"{digest}.json"


def test_remove_forgets_everywhere(tmp_path):
    ring = MemoryKeyring()
    cache = CredentialCache(OWNER, ring, cache_dir=tmp_path)
    cache.store(ROLE, creds(n=1), "req-1")  # in the keyring
    CredentialCache(OWNER, BrokenKeyring(), cache_dir=tmp_path).store(
        ROLE, creds(n=2), "req-2"
    )  # file
    assert (SERVICE, f"{ROLE} {OWNER.slot(ROLE)}") in ring.data and cache.file_path(ROLE).exists()
    assert cache.remove(ROLE) is True
    assert cache.load(ROLE) is None and not cache.file_path(ROLE).exists()
    assert (SERVICE, f"{ROLE} {OWNER.slot(ROLE)}") not in ring.data
    assert cache.remove(ROLE) is False


# --- corrupt records -------------------------------------------------------------------------

GOOD = {
    "version": 2,
    "role": ROLE,
    "request_id": "req-1",
    "person": None,
    "owner": OWNER.as_dict(),
    "access_key_id": "ASIA1KEY",
    "secret_access_key": SECRET,
    "session_token": TOKEN,
    "expiration": "2026-11-21T04:00:00Z",
}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"secret_access_key": "' + SECRET.encode() + b'", ', "not valid JSON"),
        (b"\xff\xfe" + SECRET.encode(), "not UTF-8"),
        (json.dumps([SECRET]).encode(), "not a JSON object"),
        (json.dumps({**GOOD, "version": 99}).encode(), "unsupported record version 99"),
        (json.dumps({**GOOD, "session_token": ""}).encode(), "missing or empty session_token"),
        (json.dumps({**GOOD, "expiration": "soon"}).encode(), "expiration is not an RFC 3339"),
        (json.dumps({**GOOD, "role": "other"}).encode(), "it is for role 'other'"),
        (b" " * (65 * 1024), "larger than"),
        (json.dumps({**GOOD, "version": 1, "owner": None}).encode(), "record version 1"),
        (json.dumps({**GOOD, "owner": None}).encode(), "no owner"),
        (json.dumps({**GOOD, "owner": DAVE.as_dict()}).encode(), "for another caller or config"),
    ],
    ids=[
        *("truncated", "binary", "list", "version", "empty-field", "expiration", "role", "huge"),
        *("keyed-by-role-alone", "no-owner", "another-owner"),
    ],
)
def test_corrupt_cache_file_is_no_cache_with_a_reason(tmp_path, content, reason):
    cache = CredentialCache(OWNER, fail.Keyring(), cache_dir=tmp_path)
    path = cache.file_path(ROLE)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    found = cache.lookup(ROLE)
    assert found.grant is None
    assert len(found.problems) == 1
    assert reason in found.problems[0] and str(path) in found.problems[0]
    assert SECRET not in found.problems[0]
    with pytest.raises(NoFreshCredentials) as err:  # and credential-process says why
        credential_process(ROLE, now=NOW, cache=cache)
    assert reason in str(err.value) and SECRET not in str(err.value)


def test_corrupt_keyring_entry_is_ignored_and_the_file_still_used(tmp_path):
    ring = MemoryKeyring()
    CredentialCache(OWNER, BrokenKeyring(), cache_dir=tmp_path).store(ROLE, creds(), "from-file")
    ring.data[(SERVICE, f"{ROLE} {OWNER.slot(ROLE)}")] = "garbage " + SECRET
    found = CredentialCache(OWNER, ring, cache_dir=tmp_path).lookup(ROLE)
    assert found.grant is not None and found.grant.request_id == "from-file"
    assert found.problems == ("ignored unreadable keyring entry: not valid JSON",)


# --- freshness -------------------------------------------------------------------------------


def test_fresh_boundaries():
    def grant(expires: datetime | None) -> CachedGrant:
        return CachedGrant(ROLE, "req", creds(expires))

    assert fresh(grant(NOW + timedelta(minutes=5)), NOW) is True  # exactly 5 minutes left
    assert fresh(grant(NOW + timedelta(minutes=5) - timedelta(microseconds=1)), NOW) is False
    assert fresh(grant(NOW + timedelta(hours=1)), NOW) is True
    assert fresh(grant(NOW - timedelta(seconds=1)), NOW) is False
    assert fresh(grant(None), NOW) is False  # unknown expiry: never hand it to an SDK
    assert fresh(grant(NOW + timedelta(minutes=2)), NOW, min_left=timedelta(minutes=1)) is True


# --- credential_process ----------------------------------------------------------------------


def test_credential_process_returns_the_fresh_grant(tmp_path):
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    cache.store(ROLE, creds(NOW + timedelta(minutes=5)), "req-1")
    doc = json.loads(credential_process(ROLE, now=NOW, cache=cache))
    assert doc == {
        "Version": 1,
        "AccessKeyId": "ASIA1KEY",
        "SecretAccessKey": SECRET + "1",
        "SessionToken": TOKEN + "1",
        "Expiration": "2026-11-21T03:05:00Z",
    }


@pytest.mark.parametrize(
    ("expires", "why"),
    [
        (None, "none cached"),
        (NOW - timedelta(minutes=1), "expired at 2026-11-21T02:59:00Z"),
        (NOW + timedelta(minutes=4), "they expire at 2026-11-21T03:04:00Z, less than 5m from now"),
    ],
    ids=["none", "expired", "too-soon"],
)
def test_no_fresh_credentials_is_exit_4_with_the_fix(tmp_path, expires, why):
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    if expires is not None:
        cache.store(ROLE, creds(expires), "req-1")
    with pytest.raises(NoFreshCredentials) as err:
        credential_process(ROLE, now=NOW, cache=cache)
    assert err.value.exit_code == ExitCode.TIMEOUT
    assert str(err.value) == (
        f'no fresh jitctl credentials for {ROLE} ({why}); run: jitctl request {ROLE} --reason "..."'
    )
    assert "\n" not in str(err.value)


def test_credential_process_quotes_the_role_in_the_advice(tmp_path):
    cache = CredentialCache(OWNER, MemoryKeyring(), cache_dir=tmp_path)
    with pytest.raises(NoFreshCredentials) as err:
        credential_process("x; rm -rf ~", now=NOW, cache=cache)
    assert "run: jitctl request 'x; rm -rf ~' --reason" in str(err.value)


# Stands in for the `jitctl credential-process ROLE` command until the CLI wires it: the core
# with the file cache, output on stdout, the one-line error on stderr and exit 4.
CREDPROC = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from keyring.backends import fail
from jitctl.credentials.cache import CredentialCache
from jitctl.credentials.credproc import credential_process
from jitctl.credentials.owner import CacheOwner
from jitctl.errors import JitctlError
OWNER = CacheOwner("sqlite /tmp/requests.db", "arn:aws:iam::123456789012:user/alice@example.com")
try:
    cache = CredentialCache(OWNER, fail.Keyring(), cache_dir=Path(sys.argv[1]))
    print(credential_process(sys.argv[2], now=datetime.now(UTC), cache=cache))
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"boto3", "botocore", "pagerduty"})
    assert not heavy, heavy  # the SDK runs this often: it must stay light
except JitctlError as exc:
    sys.stderr.write(f"jitctl: {exc}\\n")
    sys.exit(int(exc.exit_code))
"""


@pytest.mark.slow
def test_boto3_gets_cached_credentials_through_credential_process(aws_env, tmp_path):
    sts = boto3.client("sts")
    out = sts.assume_role(
        RoleArn="arn:aws:iam::123456789012:role/prod-readonly", RoleSessionName="alice@example.com"
    )["Credentials"]
    real = Credentials(
        out["AccessKeyId"], out["SecretAccessKey"], out["SessionToken"], out["Expiration"]
    )
    cache_dir = tmp_path / "cache"
    script = tmp_path / "credproc.py"
    script.write_text(CREDPROC)
    config = tmp_path / "config"
    lines = []
    for role in ("prod-readonly", "stale-role"):
        command = shlex.join([sys.executable, str(script), str(cache_dir), role])
        lines.append(f"[profile {role}]\ncredential_process = {command}\n")
    config.write_text("".join(lines))
    CredentialCache(OWNER, fail.Keyring(), cache_dir=cache_dir).store(
        "prod-readonly", real, "req-1"
    )
    CredentialCache(OWNER, fail.Keyring(), cache_dir=cache_dir).store(
        "stale-role", creds(datetime.now(UTC) - timedelta(minutes=1)), "req-2"
    )
    whoami = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"

    def run(profile: str) -> subprocess.CompletedProcess[str]:
        env = clean_env(
            AWS_ENDPOINT_URL=aws_env["AWS_ENDPOINT_URL"],
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
            AWS_PROFILE=profile,
        )
        return subprocess.run(
            [sys.executable, "-c", whoami], capture_output=True, text=True, env=env, timeout=60
        )

    ok = run("prod-readonly")
    assert ok.returncode == 0, ok.stderr
    assert (
        ok.stdout.strip()
        == "arn:aws:sts::123456789012:assumed-role/prod-readonly/alice@example.com"
    )
    stale = run("stale-role")
    assert stale.returncode != 0
    # The SDK shows the user our one line, fix included.
    assert "no fresh jitctl credentials for stale-role (expired at " in stale.stderr
    assert 'run: jitctl request stale-role --reason "..."' in stale.stderr


PROBE_SCRIPT = """
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from jitctl.credentials.cache import CredentialCache
from jitctl.credentials.owner import CacheOwner
from jitctl.models import Credentials
exp = datetime.now(timezone.utc) + timedelta(hours=1)
cache = CredentialCache(CacheOwner("c", "p"), cache_dir=Path(sys.argv[1]))
where = cache.store("r", Credentials("AK", "s", "t", exp), "r-1")
print(where, "keyring" in sys.modules)
"""


def test_no_usable_keyring_is_remembered_and_rechecked_when_the_backend_changes(tmp_path):
    """The second grant on a machine without a keyring skips keyring's slow backend discovery."""
    env = clean_env(PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")

    def grant(environ):
        out = subprocess.run(
            [sys.executable, "-c", PROBE_SCRIPT, str(tmp_path)],
            env=environ,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    assert grant(env) == ["file", "True"]  # asked keyring, found nothing usable
    probe = tmp_path / "keyring-probe.json"
    assert stat.S_IMODE(probe.stat().st_mode) == 0o600
    assert "secret" not in probe.read_text() and "AK" not in probe.read_text()
    assert grant(env) == ["file", "False"]  # remembered: keyring never imported
    other = dict(env, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    assert grant(other) == ["file", "True"]  # another backend setting: asked again
