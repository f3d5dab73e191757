"""`jitctl exec`'s runner: exit statuses, signals passed on (once), commands that cannot run."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jitctl.credentials.execute import FORWARDED_SIGNALS, run_child
from jitctl.errors import ExitCode, UsageError
from tests.conftest import clean_env

# The parent: jitctl's runner in a process of its own, so signals can be sent to it. It logs
# every signal it passes on (argv[1] is the log), since the child alone cannot tell: two
# copies of a signal arriving close together merge into one, in the kernel or in Python.
PARENT = """
import os, subprocess, sys
from jitctl.credentials.execute import run_child
log, real = sys.argv[1], subprocess.Popen.send_signal
def spy(self, sig):
    with open(log, "a") as fh:
        fh.write(f"{int(sig)} ")
    return real(self, sig)
subprocess.Popen.send_signal = spy
sys.exit(run_child(sys.argv[2:], os.environ))
"""

# The child: reports each signal it gets in a file, says it is ready, then waits.
# argv: SIGNUM READY_FILE MARKER_FILE LINGER_SECONDS EXIT_CODE
CHILD = """
import os, signal, sys, time
signum, ready, marker, linger, code = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
got = []
signal.signal(signum, lambda n, f: got.append(n))
open(ready, "w").close()
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not got:
    time.sleep(0.01)
time.sleep(linger)  # a second copy of the signal would arrive in this time
with open(marker, "w") as fh:
    fh.write(" ".join(map(str, got)))
sys.exit(code)
"""


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def write_child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return script


def test_exit_code_passes_through_and_handlers_are_restored():
    before = {sig: signal.getsignal(sig) for sig in FORWARDED_SIGNALS}
    assert run_child([sys.executable, "-c", "import sys; sys.exit(7)"], os.environ) == 7
    assert run_child([sys.executable, "-c", "pass"], os.environ) == 0
    assert {sig: signal.getsignal(sig) for sig in FORWARDED_SIGNALS} == before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_child_killed_by_a_signal_gives_128_plus_n(sig):
    code = f"import os; os.kill(os.getpid(), {int(sig)})"
    assert run_child([sys.executable, "-c", code], os.environ) == 128 + sig


def test_child_gets_exactly_the_given_environment_and_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "jit-test-tool"  # only on the child's PATH, not on ours
    tool.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "sys.exit(0 if os.environ.get('MARK') == 'yes' and 'HOME' not in os.environ else 9)\n"
    )
    tool.chmod(0o755)
    assert run_child(["jit-test-tool"], {"PATH": str(bindir), "MARK": "yes"}) == 0


def test_command_not_found_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as err:
        run_child(["no-such-command-jitctl"], {"PATH": str(tmp_path)})
    assert str(err.value) == "command not found: no-such-command-jitctl"
    assert err.value.exit_code == ExitCode.USAGE


def test_not_executable_is_a_usage_error(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.access(script, os.X_OK):
        pytest.skip("running as a user that may execute anything")
    with pytest.raises(UsageError) as err:
        run_child([str(script)], os.environ)
    assert str(err.value) == f"command not executable: {script}"


def test_exec_format_error_is_a_usage_error(tmp_path):
    script = tmp_path / "no-shebang"
    script.write_bytes(b"\x7fnot an executable\n")
    script.chmod(0o755)
    with pytest.raises(UsageError) as err:
        run_child([str(script)], os.environ)
    assert str(err.value).startswith(f"cannot run {script}: ")


def test_empty_command_is_a_usage_error():
    with pytest.raises(UsageError):
        run_child([], os.environ)


@pytest.mark.slow
@pytest.mark.parametrize("sig", FORWARDED_SIGNALS, ids=lambda s: s.name)
def test_signal_sent_to_jitctl_reaches_the_child(tmp_path, sig):
    ready, marker, sent = tmp_path / "ready", tmp_path / "marker", tmp_path / "sent"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(sent), sys.executable, str(write_child(tmp_path))]
        + [str(int(sig)), str(ready), str(marker), "0.3", "42"],
        env=clean_env(),
        start_new_session=True,  # no controlling terminal, as under systemd, docker or CI
    )
    try:
        wait_for(ready)
        parent.send_signal(sig)
        assert parent.wait(timeout=30) == 42  # the child's own status, not a signal death
    finally:
        if parent.poll() is None:
            parent.kill()
    assert sent.read_text() == f"{int(sig)} "  # passed on once
    assert marker.read_text() == str(int(sig))  # and the child got it


@pytest.mark.slow
def test_signal_ignored_by_our_starter_stays_ignored_in_the_child():
    code = (
        "import signal, sys; from jitctl.credentials.execute import run_child; "
        "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "sys.exit(run_child([sys.executable, '-c', "
        "'import signal, sys; sys.exit(5 if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else 6)'"
        "], {}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), timeout=60)
    assert out.returncode == 5  # nohup semantics survive `jitctl exec`


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "key"), [(signal.SIGINT, b"\x03"), (signal.SIGQUIT, b"\x1c")], ids=["ctrl-c", "ctrl-\\"]
)
def test_terminal_key_reaches_the_child_once(tmp_path, sig, key):
    """Ctrl-C in a terminal signals the whole foreground group: the child must not get two."""
    ready, marker, sent = tmp_path / "ready", tmp_path / "marker", tmp_path / "sent"
    argv = [sys.executable, "-c", PARENT, str(sent), sys.executable, str(write_child(tmp_path))]
    argv += [str(int(sig)), str(ready), str(marker), "0.2", "0"]
    pid, master = pty.fork()  # the child gets the pty as controlling terminal, in the foreground
    if pid == 0:  # pragma: no cover - replaced by exec at once
        os.execve(sys.executable, argv, clean_env())
    try:
        wait_for(ready)
        os.write(master, key)
        deadline = time.monotonic() + 30
        status = None
        while status is None:
            assert time.monotonic() < deadline, "jitctl did not exit"
            # Keep reading the terminal so nothing blocks on a full pty buffer.
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 4096)
                except OSError:
                    pass
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(master)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert marker.read_text() == str(int(sig))  # the terminal's own copy reached the child
    assert not sent.exists(), "jitctl passed on a signal the child already had from the terminal"


# --- what the child sees, through the installed CLI --------------------------------------------

ALICE = "alice@example.com"
SHOW_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_exec_child_gets_no_jitctl_variable_and_no_token(tmp_path, moto_server, pd_sim):

    from tests.harness import Team

    team = Team(tmp_path, moto_server, pd_sim)
    team.on_call(ALICE)
    env = team.env(ALICE, JITCTL_EXTRA_SETTING="anything")
    token = env["JITCTL_PAGERDUTY_TOKEN"]
    assert token and "JITCTL_CONFIG" in env  # the parent has them, so the test means something
    out = team.run(
        ALICE,
        "exec",
        "prod-readonly",
        "--reason",
        "INC-7",
        "--",
        sys.executable,
        "-c",
        SHOW_ENV,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout)
    assert [name for name in child if name.startswith("JITCTL_")] == []
    assert token not in out.stdout
    assert child["AWS_SESSION_TOKEN"] and child["PATH"] == env["PATH"]
