"""Contract "Files": the credentials file, the AWS config file, the local audit log and the SQLite
store are regular files (or links to them). Anything else is exit 2 before anything is
requested, and the thing stays what it was, with no `.lock` beside it. A profile holding keys
jitctl did not write is never overwritten.

Never the machine's own /dev/null: a device of the same kind is made in tmp_path (as root), or
a FIFO, a directory, a socket."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jitctl.credentials.profiles import MARKER, read_profile, write_profile
from jitctl.errors import UsageError
from jitctl.filelock import atomic_write, exclusive_lock, lock_path_for
from jitctl.models import Credentials
from tests.harness import SQLITE_STORE, Team

ALICE = "alice@example.com"
CREDS = Credentials("ASIANEW", "new-secret", "new-token", datetime(2030, 1, 1, tzinfo=UTC))


def _fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _directory(path: Path) -> None:
    path.mkdir()


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # the name stays after the socket is closed


def _device(path: Path) -> None:
    """A character device like /dev/null (1, 3), in tmp_path: the real one is never touched."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def _link_to_fifo(path: Path) -> None:
    target = path.with_name(path.name + "-target")
    os.mkfifo(target, 0o600)
    path.symlink_to(target)


KINDS: dict[str, Callable[[Path], None]] = {
    "fifo": _fifo,
    "directory": _directory,
    "socket": _socket,
    "device": _device,
    "link-to-fifo": _link_to_fifo,
}
WORDS = {
    "fifo": "a FIFO",
    "directory": "a directory",
    "socket": "a socket",
    "device": "a character device",
    "link-to-fifo": "a FIFO",
}


def _make(kind: str, path: Path) -> int:
    """Make a ``kind`` at ``path``; its file type, to compare after."""
    KINDS[kind](path)
    return stat.S_IFMT(os.stat(path).st_mode)


def _unchanged(path: Path, file_type: int) -> None:
    assert stat.S_IFMT(os.stat(path).st_mode) == file_type
    assert not lock_path_for(path).exists()
    assert not lock_path_for(Path(os.path.realpath(path))).exists()


def _nothing_requested(team: Team) -> None:
    assert team.audit_records(ALICE) == []
    store = team.root / "requests.db"
    if store.exists():
        with sqlite3.connect(store) as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'requests'").fetchall()
            rows = db.execute("SELECT count(*) FROM requests").fetchone()[0] if tables else 0
        assert rows == 0


def on_call(team: Team) -> None:
    now = datetime.now(UTC)
    user = team.pd_user(ALICE)
    team.pd.add_oncall(
        user, "PEP1234", 1, start=now - timedelta(hours=1), end=now + timedelta(hours=6)
    )


@pytest.mark.parametrize("variable", ["AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_aws_file_that_is_not_a_file_is_exit_2_before_anything_is_requested(
    team, tmp_path, variable, kind
):
    target = tmp_path / "aws-file"
    file_type = _make(kind, target)
    on_call(team)  # without the rule, credentials would be issued and written at once
    out = team.run(
        ALICE,
        "request",
        "prod-readonly",
        "--reason",
        "INC-1",
        env=team.env(ALICE, **{variable: str(target)}),
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert f"{target} is {WORDS[kind]}" in out.stderr
    assert "Traceback" not in out.stderr
    _unchanged(target, file_type)
    _nothing_requested(team)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_audit_log_that_is_not_a_file_is_exit_2_and_nothing_is_stored(team, tmp_path, kind):
    target = tmp_path / "audit-log"
    file_type = _make(kind, target)
    out = team.run(
        ALICE,
        "request",
        "prod-admin",
        "--reason",
        "INC-2",
        "--no-wait",
        env=team.env(ALICE, JITCTL_AUDIT_LOG=str(target)),
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert f"the audit log {target} is {WORDS[kind]}" in out.stderr
    _unchanged(target, file_type)
    _nothing_requested(team)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_store_that_is_not_a_file_is_exit_2_and_nothing_is_audited(team, tmp_path, kind):
    target = tmp_path / "store"
    file_type = _make(kind, target)
    team.use_store(SQLITE_STORE.replace('"requests.db"', f'"{target}"'))
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-3", "--no-wait", timeout=30)
    assert out.returncode == 2, out.stderr
    assert f"the request store {target} is {WORDS[kind]}" in out.stderr
    _unchanged(target, file_type)
    for suffix in ("-wal", "-shm", "-journal"):
        assert not Path(f"{target}{suffix}").exists()
    _nothing_requested(team)


def test_a_decision_is_not_stored_when_the_deciders_audit_log_is_not_a_file(team, tmp_path):
    """approve stores the decision, then records it: the log is checked before either."""
    out = team.run(ALICE, "request", "prod-admin", "--reason", "INC-9", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    target = tmp_path / "bob-audit"
    _make("fifo", target)
    bob = team.env("bob@example.com", JITCTL_AUDIT_LOG=str(target))
    out = team.run("bob@example.com", "approve", request_id, env=bob, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "is a FIFO" in out.stderr
    doc = json.loads(team.run(ALICE, "status", request_id, "--json").stdout)
    assert doc["status"] == "pending" and doc["approvers"] == []


def test_audit_log_reader_refuses_a_fifo_rather_than_blocking(team, tmp_path):
    target = tmp_path / "audit-log"
    _make("fifo", target)
    out = team.run(
        ALICE,
        "audit",
        "log",
        "--json",
        env=team.env(ALICE, JITCTL_AUDIT_LOG=str(target)),
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert "is a FIFO" in out.stderr


LONG_TERM = (
    "# my keys\n[default]\naws_access_key_id = AKIALONGTERM\naws_secret_access_key = keep-me\n"
)


def test_a_profile_of_long_term_keys_is_never_overwritten(team):
    on_call(team)
    path = team.credentials_file(ALICE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LONG_TERM + "\n[dev]\nregion = x\n")
    before = path.read_bytes()
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-4", "--profile", "default")
    assert out.returncode == 2, out.stderr
    assert "profile [default]" in out.stderr and "did not write" in out.stderr
    assert path.read_bytes() == before
    _nothing_requested(team)


def test_a_profile_jitctl_wrote_is_written_again(team):
    """The same profile, issued twice: the marker says it is jitctl's to replace."""
    on_call(team)
    for reason in ("INC-5", "INC-6"):
        out = team.run(  # --fresh: a second grant, not the live one handed out again
            ALICE, "request", "prod-readonly", "--reason", reason, "--profile", "mine", "--fresh"
        )
        assert out.returncode == 0, out.stderr
    ids = {r["request_id"] for r in team.audit_records(ALICE) if r["event"] == "issued"}
    assert read_profile(team.credentials_file(ALICE), "mine")[MARKER] in ids and len(ids) == 2


# --- the writers themselves, for a file that changed after the early check -------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket", "device"])
def test_lock_and_atomic_write_refuse_what_is_not_a_file(tmp_path, kind):
    target = tmp_path / "target"
    file_type = _make(kind, target)
    with pytest.raises(UsageError, match=WORDS[kind]):
        with exclusive_lock(target, timeout=1):
            pass
    with pytest.raises(UsageError, match=WORDS[kind]):
        atomic_write(target, b"secret")
    _unchanged(target, file_type)
    assert [p.name for p in tmp_path.iterdir()] == ["target"]  # no temp left either


def test_write_profile_only_ours_refuses_foreign_keys_under_its_lock(tmp_path):
    path = tmp_path / "credentials"
    path.write_text(LONG_TERM)
    with pytest.raises(UsageError, match=r"profile \[default\]"):
        write_profile(path, "default", CREDS, extra={MARKER: "r-1"}, only_ours=True)
    assert path.read_text() == LONG_TERM
    # Once jitctl's own (the marker), the same profile is replaced.
    write_profile(path, "jit-x", CREDS, extra={MARKER: "r-1"}, only_ours=True)
    write_profile(path, "jit-x", CREDS, extra={MARKER: "r-2"}, only_ours=True)
    assert read_profile(path, "jit-x")[MARKER] == "r-2"
    assert read_profile(path, "default")["aws_secret_access_key"] == "keep-me"


def test_the_audit_log_refuses_a_fifo_when_written_and_when_read(tmp_path):
    from jitctl.audit.log import AuditLog, read_records
    from tests.conftest import FixedClock

    target = tmp_path / "audit"
    file_type = _make("fifo", target)
    log = AuditLog(target, FixedClock(datetime(2030, 1, 1, tzinfo=UTC)))
    with pytest.raises(UsageError, match="the audit log .* is a FIFO"):
        log.append("requested", request_id="r-1", actor="a", person="a", role="r")
    with pytest.raises(UsageError, match="the audit log .* is a FIFO"):
        read_records(target)  # rather than blocking until someone writes to the FIFO
    _unchanged(target, file_type)


def test_revoke_cleans_up_around_a_credentials_fifo_without_blocking(tmp_path):
    """Reading the credentials file (revoke's local clean-up, `read_profile`) refuses a FIFO
    instead of waiting for ever for a writer."""
    from jitctl.credentials.profiles import profiles_for_request

    target = tmp_path / "credentials"
    _make("fifo", target)
    with pytest.raises(UsageError, match="is a FIFO"):
        profiles_for_request(target, "r-1")
    with pytest.raises(UsageError, match="is a FIFO"):
        read_profile(target, "jit-x")
