"""How the `jitctl` process starts and ends: tuned for a command that lives about a second.

Both steps are the console script's alone (``jitctl.cli.launch``); in-process callers
(tests, ``jitctl.cli.main.run``) keep the interpreter's defaults.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import Any, NoReturn, TextIO

# The collector's defaults (a pass every 700 new objects) suit long-lived programs; importing
# boto3 and its peers makes a few hundred thousand objects that all live to the end, and the
# collector walks them again and again. The on-call request, medians of 15 alternating runs
# (two sessions): 851 ms at 700; 787 and 782 ms at 50,000; 780 ms at 100,000; 752 and 743 ms
# at 200,000; 742 ms at 1,000,000. At 200,000 a request collects about once; a waiting
# request or `broker serve` still collects every cycle, after at most this many new objects
# (tens of MB at worst).
_YOUNG_THRESHOLD = 200_000


def tune_collector() -> None:
    """Collect garbage less often, for the whole process (see above)."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, middle, old)


class ReaderGone:
    """stdout or stderr for a reader that may go away (`jitctl request ... 2>&1 | head -1`).

    Once a write or flush finds the pipe closed, the stream's file descriptor is pointed at
    /dev/null and the command carries on as if the text had been read: output nobody can read
    never changes what the command does or its exit code (the contract: credentials delivered
    are exit 0). Without this, rich ends the process with exit 1 at its first broken pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost = False  # whether a reader went away

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        self.lost = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        self._stream.flush()  # what was still buffered goes to /dev/null now

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def guard_output() -> None:
    """stdout and stderr, for the whole process, as ReaderGone streams."""
    if sys.stdout is not None and not isinstance(sys.stdout, ReaderGone):
        sys.stdout = ReaderGone(sys.stdout)
    if sys.stderr is not None and not isinstance(sys.stderr, ReaderGone):
        sys.stderr = ReaderGone(sys.stderr)


def _flushed() -> bool:
    """Flush stdout and stderr; False when that fails (a closed pipe), which the regular
    exit reports the usual way."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            return False
    return True


def _only_daemons_left() -> bool:
    """No thread but the main one that the interpreter would wait for at exit."""
    main = threading.main_thread()
    return all(t.daemon for t in threading.enumerate() if t is not main)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without tearing the interpreter down.

    The teardown frees every module and object one by one (~70-120 ms after boto3 and
    PagerDuty's client are loaded) only for the OS to reclaim the memory anyway. What a
    regular exit does that matters still happens: output is flushed and ``atexit`` handlers
    run (logging's flush, filelock's release, weakref finalizers). Files are written and
    closed where they are written, SQLite commits are durable when they return, and the OS
    releases locks. A thread still running, or output that cannot be flushed, takes the
    regular path instead."""
    if _only_daemons_left() and _flushed():
        atexit._run_exitfuncs()  # what the interpreter's own exit runs; each handler runs once
        if _flushed():  # what an exit handler printed
            os._exit(code)
    sys.exit(code)
