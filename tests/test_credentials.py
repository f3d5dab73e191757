"""The shared credentials file: line-level edits, 0600, botocore-readable, safe under concurrency."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jitctl.credentials.profiles import (
    read_profile,
    remove_profile,
    shared_credentials_path,
    write_profile,
)
from jitctl.models import Credentials

EXPIRES = datetime(2026, 11, 21, 4, 0, 0, tzinfo=UTC)

ORIGINAL = (
    "# my credentials, hand-kept\n"
    "[default]\n"
    "aws_access_key_id = AKIADEFAULT\n"
    "aws_secret_access_key = default-secret\n"
    "\n"
    "; semicolon comment before dev\n"
    "[dev]\n"
    "aws_access_key_id=AKIADEV\n"
    "aws_secret_access_key=dev-secret\n"
    "region = eu-west-1\n"
)


def creds(n: int | str = 1) -> Credentials:
    return Credentials(f"ASIA{n}KEY", f"secret-{n}", f"token-{n}", EXPIRES)


def section_text(profile: str, n: int | str = 1, **extra: str) -> str:
    lines = [
        f"[{profile}]",
        f"aws_access_key_id = ASIA{n}KEY",
        f"aws_secret_access_key = secret-{n}",
        f"aws_session_token = token-{n}",
        "x_security_token_expires = 2026-11-21T04:00:00Z",
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cred_file(tmp_path: Path) -> Path:
    path = tmp_path / "aws" / "credentials"
    path.parent.mkdir()
    path.write_text(ORIGINAL)
    return path


def test_path_from_env_and_default(tmp_path: Path) -> None:
    assert shared_credentials_path({"AWS_SHARED_CREDENTIALS_FILE": "/x/creds"}) == Path("/x/creds")
    assert shared_credentials_path({"HOME": str(tmp_path)}) == tmp_path / ".aws" / "credentials"


def test_append_keeps_everything_else_byte_for_byte(cred_file: Path) -> None:
    write_profile(cred_file, "jit-prod", creds(), extra={"x_jitctl_request_id": "r-1"})
    text = cred_file.read_text()
    assert text == ORIGINAL + "\n" + section_text("jit-prod", x_jitctl_request_id="r-1")
    assert read_profile(cred_file, "jit-prod") == {
        "aws_access_key_id": "ASIA1KEY",
        "aws_secret_access_key": "secret-1",
        "aws_session_token": "token-1",
        "x_security_token_expires": "2026-11-21T04:00:00Z",
        "x_jitctl_request_id": "r-1",
    }


def test_replace_keeps_position_and_neighbours(cred_file: Path) -> None:
    cred_file.write_text(
        "[default]\naws_access_key_id = A\n\n"
        "[jit-prod]\naws_access_key_id = OLD\nx_old_key = gone\n\n"
        "# dev follows\n[dev]\nregion = x\n"
    )
    write_profile(cred_file, "jit-prod", creds(2))
    assert cred_file.read_text() == (
        "[default]\naws_access_key_id = A\n\n"
        + section_text("jit-prod", 2)
        + "\n# dev follows\n[dev]\nregion = x\n"
    )
    # Writing again is stable: no duplicate sections, no growing blank lines.
    before = cred_file.read_text()
    write_profile(cred_file, "jit-prod", creds(2))
    assert cred_file.read_text() == before


def test_header_with_surrounding_whitespace_is_replaced_in_place(cred_file: Path) -> None:
    cred_file.write_text("  [jit-prod]  \t\naws_access_key_id = OLD\n[dev]\nregion = x\n")
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_text() == section_text("jit-prod") + "[dev]\nregion = x\n"


def test_comment_inside_target_section_survives(cred_file: Path) -> None:
    cred_file.write_text("[jit-prod]\n# keep me\naws_access_key_id = OLD\n")
    write_profile(cred_file, "jit-prod", creds())
    lines = cred_file.read_text().splitlines()
    assert lines[:2] == ["[jit-prod]", "# keep me"]
    assert read_profile(cred_file, "jit-prod")["aws_access_key_id"] == "ASIA1KEY"


def test_indented_lookalike_header_is_a_continuation_not_a_section(cred_file: Path) -> None:
    # configparser (and so botocore) reads the indented line as part of "note"'s value.
    original = "[other]\nnote = first\n  [jit-prod]\n"
    cred_file.write_text(original)
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_text() == original + "\n" + section_text("jit-prod")
    assert read_profile(cred_file, "jit-prod")["aws_access_key_id"] == "ASIA1KEY"


def test_duplicate_target_sections_collapse_into_one(cred_file: Path) -> None:
    cred_file.write_text("[jit-prod]\na = 1\n[dev]\nb = 2\n[jit-prod]\nc = 3\n")
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_text() == section_text("jit-prod") + "[dev]\nb = 2\n"


def test_file_without_trailing_newline(cred_file: Path) -> None:
    cred_file.write_text("[dev]\nregion = x")
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_text() == "[dev]\nregion = x\n\n" + section_text("jit-prod")
    cred_file.write_text("[jit-prod]\naws_access_key_id = OLD")
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_text() == section_text("jit-prod")


def test_crlf_file_stays_crlf(cred_file: Path) -> None:
    cred_file.write_bytes(b"[dev]\r\nregion = x\r\n")
    write_profile(cred_file, "jit-prod", creds())
    data = cred_file.read_bytes()
    assert data.startswith(b"[dev]\r\nregion = x\r\n\r\n[jit-prod]\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_non_utf8_bytes_elsewhere_survive(cred_file: Path) -> None:
    original = b"# caf\xe9 latin-1 comment\n[dev]\nregion = x\n"
    cred_file.write_bytes(original)
    write_profile(cred_file, "jit-prod", creds())
    assert cred_file.read_bytes().startswith(original)


def test_missing_file_and_directory_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / ".aws" / "credentials"
    old = os.umask(0o000)
    try:
        write_profile(path, "jit-prod", creds())
    finally:
        os.umask(old)
    assert path.read_text() == section_text("jit-prod")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_mode_is_0600_even_with_umask_zero_and_a_loose_existing_file(cred_file: Path) -> None:
    cred_file.chmod(0o644)
    old = os.umask(0o000)
    try:
        write_profile(cred_file, "jit-prod", creds())
    finally:
        os.umask(old)
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    assert not [p.name for p in cred_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_symlinked_file_keeps_its_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "credentials"
    real.parent.mkdir()
    real.write_text("[dev]\nregion = x\n")
    link = tmp_path / "credentials"
    link.symlink_to(real)
    write_profile(link, "jit-prod", creds())
    assert link.is_symlink()
    assert read_profile(real, "jit-prod") is not None


def test_botocore_reads_the_profile(cred_file: Path, tmp_path: Path, monkeypatch) -> None:
    import botocore.session

    write_profile(cred_file, "jit-prod", creds(7), extra={"x_jitctl_request_id": "r-7"})
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(cred_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    got = botocore.session.Session(profile="jit-prod").get_credentials()
    assert got is not None
    frozen = got.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "ASIA7KEY",
        "secret-7",
        "token-7",
    )
    # The other profiles are still readable too.
    dev = botocore.session.Session(profile="dev").get_credentials()
    assert dev.access_key == "AKIADEV"


def test_remove_profile(cred_file: Path) -> None:
    write_profile(cred_file, "jit-prod", creds())
    assert remove_profile(cred_file, "jit-prod") is True
    assert read_profile(cred_file, "jit-prod") is None
    assert cred_file.read_text() == ORIGINAL + "\n"
    assert remove_profile(cred_file, "jit-prod") is False
    assert remove_profile(cred_file.parent / "absent", "jit-prod") is False


def test_remove_middle_profile_keeps_following_comment(cred_file: Path) -> None:
    cred_file.write_text("[a]\nk = 1\n\n[jit-prod]\nk = 2\n\n# about b\n[b]\nk = 3\n")
    assert remove_profile(cred_file, "jit-prod")
    assert cred_file.read_text() == "[a]\nk = 1\n\n\n# about b\n[b]\nk = 3\n"


def test_read_profile_missing_file(tmp_path: Path) -> None:
    assert read_profile(tmp_path / "nope", "jit-prod") is None


@pytest.mark.parametrize(
    "name", ["", "a]b", "a[b", "a\nb", "a\rb", " lead", "trail ", "tab\tin", "DEFAULT"]
)
def test_bad_profile_names_are_refused(cred_file: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write_profile(cred_file, name, creds())
    assert cred_file.read_text() == ORIGINAL


@pytest.mark.parametrize(
    "extra",
    [
        {"x_note": "line\ninjected"},
        {"aws_session_token": "override"},
        {"Bad Key": "v"},
        {"x_note": " padded"},
    ],
)
def test_bad_extra_is_refused(cred_file: Path, extra: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        write_profile(cred_file, "jit-prod", creds(), extra=extra)
    assert cred_file.read_text() == ORIGINAL


def test_secret_with_newline_is_refused(cred_file: Path) -> None:
    with pytest.raises(ValueError):
        write_profile(cred_file, "p", Credentials("AKIA", "s\n[default]", "t", EXPIRES))
    assert cred_file.read_text() == ORIGINAL


def _concurrent_writer(path: str, n: int, barrier) -> None:
    barrier.wait(timeout=60)
    write_profile(Path(path), f"jit-{n}", creds(n), extra={"x_jitctl_request_id": f"r-{n}"})


@pytest.mark.slow
def test_ten_processes_writing_at_once_lose_nothing(cred_file: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(10)
    procs = [
        ctx.Process(target=_concurrent_writer, args=(str(cred_file), n, barrier)) for n in range(10)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 10

    text = cred_file.read_text()
    assert text.startswith(ORIGINAL)
    for n in range(10):
        assert text.count(f"[jit-{n}]\n") == 1
        assert read_profile(cred_file, f"jit-{n}") == {
            "aws_access_key_id": f"ASIA{n}KEY",
            "aws_secret_access_key": f"secret-{n}",
            "aws_session_token": f"token-{n}",
            "x_security_token_expires": "2026-11-21T04:00:00Z",
            "x_jitctl_request_id": f"r-{n}",
        }
    assert read_profile(cred_file, "dev") == {
        "aws_access_key_id": "AKIADEV",
        "aws_secret_access_key": "dev-secret",
        "region": "eu-west-1",
    }
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600


# --- files left by crashed writers, and lock files that are links ---------------------------

# A writer that dies in the worst place: its temp file (full credentials) is written and
# synced, and the process is killed (SIGKILL, nothing runs after) just before the rename.
_CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from datetime import UTC, datetime
from jitctl.credentials.profiles import write_profile
from jitctl.models import Credentials
os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
write_profile(Path(sys.argv[1]), "jit-crash", Credentials("ASIACRASH", "crash-secret", "t",
              datetime(2026, 11, 21, 4, 0, tzinfo=UTC)))
"""


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_crashed_writers_temp_file_is_gone_after_the_next_write(cred_file: Path) -> None:
    import subprocess
    import sys

    def crash() -> list[str]:
        argv = [sys.executable, "-c", _CRASHING_WRITER, str(cred_file)]
        assert subprocess.run(argv, timeout=60).returncode == -signal.SIGKILL
        return _temps(cred_file.parent)

    first = crash()
    assert len(first) == 1 and first[0].startswith(".credentials.")
    assert "crash-secret" in (cred_file.parent / first[0]).read_text()
    second = crash()  # the next writer (crashing too) cleared the first one's temp
    assert len(second) == 1 and second != first
    # Not ours: another file's temp, a look-alike name, and a link with our temps' shape.
    other = cred_file.parent / ".credentials.bak.123.0123abcd.tmp"
    other.write_text("another file's temp")
    lookalike = cred_file.parent / ".credentials.notes.tmp"
    lookalike.write_text("mine")
    target = cred_file.parent / "link-target"
    target.write_text("keep")
    (cred_file.parent / ".credentials.99.89abcdef.tmp").symlink_to(target)

    write_profile(cred_file, "jit-prod", creds())

    assert _temps(cred_file.parent) == sorted(
        [other.name, lookalike.name, ".credentials.99.89abcdef.tmp"]
    )
    assert target.read_text() == "keep"
    assert read_profile(cred_file, "jit-crash") is None  # the crashed write never landed
    assert read_profile(cred_file, "jit-prod") is not None


def test_remove_profile_clears_crashed_temps_too(cred_file: Path) -> None:
    stray = cred_file.parent / ".credentials.4242.deadbeef.tmp"
    stray.write_text("[jit-x]\naws_secret_access_key = left-behind\n")
    assert remove_profile(cred_file, "dev") is True
    assert not stray.exists()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(
    cred_file: Path, tmp_path: Path
) -> None:
    from jitctl.errors import ExitCode, UsageError

    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    victim.chmod(0o644)
    lock = cred_file.parent / "credentials.lock"
    lock.symlink_to(victim)
    dangling = tmp_path / "other" / "credentials.lock"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "would-be-created")

    for path, link in ((cred_file, lock), (dangling.parent / "credentials", dangling)):
        with pytest.raises(UsageError) as err:
            write_profile(path, "jit-prod", creds())
        assert err.value.exit_code == ExitCode.USAGE
        assert f"refusing to use the lock file {link}: it is a symlink" in str(err.value)
        assert "\n" not in str(err.value)
    assert victim.read_text() == "do not touch\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not (tmp_path / "would-be-created").exists()
    assert cred_file.read_text() == ORIGINAL


def test_cli_refuses_a_symlinked_credentials_lock_in_one_line(tmp_path, moto_server, pd_sim):

    from tests.harness import Team

    alice = "alice@example.com"
    team = Team(tmp_path, moto_server, pd_sim)
    team.on_call(alice)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = team.credentials_file(alice).with_name("credentials.lock")
    lock.parent.mkdir(parents=True)
    lock.symlink_to(victim)

    out = team.run(alice, "request", "prod-readonly", "--reason", "INC-8")

    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"lock file {lock}: it is a symlink" in lines[0]
    assert "Traceback" not in out.stderr
    assert victim.read_text() == "precious\n" and lock.is_symlink()
    assert not team.credentials_file(alice).exists()
