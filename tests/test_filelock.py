"""Locks and atomic writes through the ``filelock`` package, as every OS will run them.

CI is Linux: here ``filelock`` locks with ``flock``. What is Windows-only (``os.replace``
refused while another process has the file open) is driven through our own ``Replace``
interface with a target that is busy a given number of times.
"""

from __future__ import annotations

import ast
import errno
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import filelock
import pytest

from jitctl.filelock import (
    atomic_write,
    exclusive_lock,
    lock_path_for,
    replace_with_retry,
)

ROOT = Path(__file__).resolve().parent.parent
WRITERS, ROUNDS = 20, 10
PAD = "x" * 50_000  # a file this size is written in more than one step: a torn read would show


def _bump(path: str, barrier) -> None:
    """One writer process: ROUNDS read-modify-write cycles, each under the lock."""
    target = Path(path)
    barrier.wait(timeout=120)
    for _ in range(ROUNDS):
        with exclusive_lock(target, timeout=120):
            state = json.loads(target.read_text())
            state["n"] += 1
            state["writers"].append(os.getpid())
            atomic_write(target, json.dumps(state).encode())


@pytest.mark.slow
def test_twenty_writer_processes_lose_no_update_and_no_reader_sees_a_torn_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"n": 0, "writers": [], "pad": PAD}))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_bump, args=(str(path), barrier)) for _ in range(WRITERS)]
    for proc in procs:
        proc.start()
    reads = 0
    while any(proc.is_alive() for proc in procs):
        json.loads(path.read_text())  # never empty, never half old and half new
        reads += 1
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS

    state = json.loads(path.read_text())
    assert state["n"] == WRITERS * ROUNDS  # no read-modify-write was lost
    assert len(set(state["writers"])) == WRITERS and reads > 0
    lock = lock_path_for(path)
    assert stat.S_ISREG(os.lstat(lock).st_mode) and stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]


HOLDER = r"""
import sys, filelock
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""

PROBE = r"""
import sys, filelock
for name in sys.argv[1:]:
    try:
        filelock.FileLock(name, timeout=0.2).acquire()
        print(name, "free")
    except filelock.Timeout:
        print(name, "held")
"""


def test_a_lock_held_through_filelock_elsewhere_times_out_naming_the_lock_file(tmp_path):
    path = tmp_path / "credentials"
    lock = lock_path_for(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(TimeoutError) as err, exclusive_lock(path, timeout=0.3):
            pass
        assert 0.3 <= time.monotonic() - started < 5
        assert err.value.errno == errno.ETIMEDOUT and err.value.filename == str(lock)
    finally:
        holder.communicate("", timeout=30)
    with exclusive_lock(path, timeout=5):  # released when the holder exited
        pass


def test_the_lock_is_the_sidecar_file_never_the_data_file(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("data\n")
    with exclusive_lock(path, timeout=5):
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, str(lock_path_for(path)), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert probe.stdout.splitlines() == [f"{lock_path_for(path)} held", f"{path} free"]
    assert path.read_text() == "data\n"


def test_a_new_lock_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with exclusive_lock(tmp_path / "sub" / "cache", timeout=5):
            pass
    finally:
        os.umask(old)
    lock = tmp_path / "sub" / "cache.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700
    assert not (tmp_path / "sub" / "cache").exists()


def test_filelock_itself_never_opens_a_lock_file_through_a_link(tmp_path):
    """jitctl refuses a linked lock file before locking; filelock must refuse one planted later."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "credentials.lock"
    link.symlink_to(victim)
    with pytest.raises(OSError) as err:
        filelock.FileLock(link, timeout=1, mode=0o600, preserve_lock_file=True).acquire()
    assert err.value.errno == errno.ELOOP
    assert victim.read_text() == "precious\n"


class BusyTarget:
    """Our ``Replace`` interface, refusing like Windows while another process has ``dst`` open."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def __call__(self, src: Path, dst: Path) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            raise PermissionError(errno.EACCES, "being used by another process", str(dst))
        os.replace(src, dst)


def test_a_refused_replace_is_retried_with_growing_waits_until_it_lands(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("old\n")
    busy, slept = BusyTarget(busy=3), []
    retrying = partial(replace_with_retry, replace=busy, sleep=slept.append, attempts=8)
    atomic_write(path, b"new\n", replace=retrying)
    assert path.read_text() == "new\n" and busy.calls == 4
    assert slept == [0.01, 0.02, 0.04]
    assert [p.name for p in tmp_path.iterdir()] == ["credentials"]  # no temp left


def test_a_replace_refused_every_time_gives_up_bounded_and_leaves_the_old_file(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("old\n")
    busy, slept = BusyTarget(busy=100), []
    retrying = partial(replace_with_retry, replace=busy, sleep=slept.append, attempts=8)
    with pytest.raises(PermissionError):
        atomic_write(path, b"new\n", replace=retrying)
    assert busy.calls == 8 and len(slept) == 7 and sum(slept) < 1.5
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["credentials"]  # the temp was removed


def test_only_permission_errors_are_retried(tmp_path):
    calls = []

    def missing(src: Path, dst: Path) -> None:
        calls.append(src)
        raise FileNotFoundError(errno.ENOENT, "gone", str(src))

    with pytest.raises(FileNotFoundError):
        replace_with_retry(tmp_path / "a", tmp_path / "b", replace=missing, sleep=calls.append)
    assert len(calls) == 1


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_lock_module_imports_nothing_posix_only():
    assert not _imported_modules(ROOT / "jitctl" / "filelock.py") & {"fcntl", "termios", "pwd"}


def test_nothing_pins_a_linux_only_keyring_backend():
    """keyring picks the OS's native backend (Keychain, Windows Credential Locker, Secret
    Service); jitctl must not name one, nor depend on a Linux-only backend's package."""
    linux_only = ("SecretService", "kwallet", "libsecret", "secretstorage", "dbus")
    for source in (ROOT / "jitctl").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert not [name for name in linux_only if name in text], source
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8").lower()
    assert "secretstorage" not in pyproject and "dbus" not in pyproject
