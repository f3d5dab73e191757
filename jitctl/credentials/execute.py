"""Run a command with credentials in its environment (`jitctl exec ROLE -- CMD ...`).

The credentials live only in the child's environment: nothing is written to disk. jitctl
stays the parent so that it can report the child's exit status the way a shell does, and
it passes on the signals a supervisor uses to stop or poke a process (systemd, docker,
CI runners and `kill` send them to jitctl, not to the child they cannot see).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from jitctl.errors import UsageError

FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\). The child
# is in our group, so it already got one; forwarding would deliver a second, which many
# programs read as "force quit now" (terraform: "Two interrupts received").
_TERMINAL_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT})
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def check_runnable(argv: list[str], env: Mapping[str, str]) -> None:
    """Before anything is requested: a command that cannot start would waste a grant (and a
    peer's approval). Looked up as Popen will, in ``env``'s PATH."""
    import shutil

    if argv and shutil.which(argv[0], path=env.get("PATH", os.defpath)) is None:
        raise UsageError(
            f"command not found: {argv[0]}",
            "check its name and PATH (or give its path); nothing was requested",
        )


def run_child(argv: list[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` (no shell) with exactly ``env``; return its exit status.

    A child killed by signal N gives 128+N, as in a shell. ``PATH`` is looked up in ``env``.
    Raises UsageError when the command cannot be started at all. Call it from the main
    thread: Python installs signal handlers only there.
    """
    if not argv:
        raise UsageError(
            "no command given", "put the command after --, e.g. jitctl exec ROLE -- aws s3 ls"
        )
    forwarder = _Forwarder()
    forwarder.install()
    try:
        try:
            proc = subprocess.Popen(argv, env=dict(env))
        except FileNotFoundError:
            raise UsageError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise UsageError(f"command not executable: {argv[0]}") from None
        except OSError as exc:  # ENOEXEC (a script without #!), ENOTDIR, E2BIG, ...
            raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        forwarder.attach(proc)
        # Popen.wait retries after each signal handler runs (PEP 475), so forwarding never
        # cuts the wait short; we always return the child's own status.
        returncode = proc.wait()
    finally:
        forwarder.restore()
    return 128 - returncode if returncode < 0 else returncode


class _Forwarder:
    """Signal handlers that pass signals on to the child while it runs.

    Handlers go in before the child starts so that a signal arriving in between is not lost
    (nor allowed to kill jitctl and orphan the child); it is delivered once the child exists.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: list[int] = []
        self._previous: dict[int, _Handler] = {}

    def install(self) -> None:
        for sig in FORWARDED_SIGNALS:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:
                # Ignored on purpose by whoever started us (nohup, `cmd &` in a script): the
                # child inherits the ignore through exec, so leave it that way.
                continue
            self._previous[sig] = current
            signal.signal(sig, self._handle)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        pending, self._pending = self._pending, []
        for sig in pending:
            self._send(sig)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            # None means the handler was not installed from Python; default is closest.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum in _TERMINAL_SIGNALS and _terminal_sent_to_our_group():
            return
        if self._proc is None:
            self._pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        assert self._proc is not None
        try:
            self._proc.send_signal(signum)  # a no-op once the child has been reaped
        except ProcessLookupError:  # exited but not yet reaped: nothing to tell it
            pass


def _terminal_sent_to_our_group() -> bool:
    """Whether we are in the foreground of our controlling terminal.

    Python's handlers do not see who sent a signal, so this is the proxy: in the foreground,
    a SIGINT/SIGQUIT is almost surely the terminal's, which reached the child too. The price:
    `kill -INT <jitctl>` from elsewhere while jitctl runs in a terminal's foreground is not
    passed on (send it to the child instead). Without a terminal everything is forwarded.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False  # no controlling terminal
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)
