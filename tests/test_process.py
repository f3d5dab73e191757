"""How the console script ends (jitctl.cli.process.exit_now): without the interpreter's
teardown, yet with everything a regular exit guarantees: the exit code, output written but not
yet flushed, atexit handlers, and threads the interpreter would wait for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import clean_env

# A module-level object whose finalizer shows whether the interpreter tore itself down.
PRELUDE = """
import atexit, sys, threading, time
from jitctl.cli.process import exit_now

class Witness:
    def __del__(self):
        sys.stderr.write("torn down\\n")

witness = Witness()
"""


def run_script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=clean_env(), timeout=60
    )


def test_code_output_and_exit_handlers_survive_without_teardown(tmp_path: Path) -> None:
    marker = tmp_path / "handler-ran"
    proc = run_script(
        f"""
        atexit.register(lambda: open({str(marker)!r}, "w").close())
        atexit.register(lambda: sys.stdout.write("from a handler\\n"))
        sys.stdout.write("x" * 100_000)  # buffered, never flushed by the script
        sys.stdout.write("\\nend\\n")
        exit_now(3)
        """,
        tmp_path,
    )
    assert proc.returncode == 3
    assert proc.stdout == "x" * 100_000 + "\nend\nfrom a handler\n"
    assert marker.exists()
    assert "torn down" not in proc.stderr  # the teardown was skipped


def test_a_running_thread_takes_the_regular_exit(tmp_path: Path) -> None:
    proc = run_script(
        """
        def late():
            time.sleep(0.3)
            sys.stdout.write("thread finished\\n")

        threading.Thread(target=late).start()  # not a daemon: the interpreter waits for it
        exit_now(4)
        """,
        tmp_path,
    )
    assert proc.returncode == 4
    assert proc.stdout == "thread finished\n"
    assert "torn down" in proc.stderr


def test_daemon_threads_do_not_hold_the_process(tmp_path: Path) -> None:
    proc = run_script(
        """
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        sys.stdout.write("done\\n")
        exit_now(0)
        """,
        tmp_path,
    )
    assert (proc.returncode, proc.stdout) == (0, "done\n")
    assert "torn down" not in proc.stderr


def test_output_that_cannot_be_flushed_gets_the_regular_exit(tmp_path: Path) -> None:
    proc = run_script(
        """
        import io

        class ClosedPipe(io.StringIO):  # what `| head` leaves: every flush fails
            def flush(self):
                raise BrokenPipeError(32, "Broken pipe")

        sys.stdout = ClosedPipe()
        exit_now(0)
        """,
        tmp_path,
    )
    assert "torn down" in proc.stderr  # the interpreter ended the usual way, and said why
    assert "BrokenPipeError" in proc.stderr
