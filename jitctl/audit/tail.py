"""The end of the local audit log: reading its last line, and moving a torn tail aside.

A torn tail is a last line that a write cut short left behind (disk full, a crash): no
newline, not a whole record. ``jitctl.audit.log`` decides what is torn; this module only reads
and moves bytes, under the log's lock, which the caller holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.filelock import write_all

TORN_SUFFIX = ".torn"  # <log>.torn keeps the bytes of torn tails moved out of the log
_TAIL_CHUNK = 8192


@dataclass(frozen=True)
class Tail:
    start: int  # byte offset of the last line in the log
    raw: bytes  # the last line, without its newline
    complete: bool  # whether it ends with a newline


def torn_path(log: Path) -> Path:
    return log.with_name(log.name + TORN_SUFFIX)


def read_tail(fd: int, size: int) -> Tail | None:
    """The log's last line (None for an empty log). Reads backwards from the end in chunks,
    so the cost does not grow with the log."""
    if size == 0:
        return None
    buffer = b""
    position = size
    while True:
        start = max(0, position - _TAIL_CHUNK)
        buffer = os.pread(fd, position - start, start) + buffer
        position = start
        # Skip the file's final newline; the last line starts after the newline before it.
        cut = buffer.rfind(b"\n", 0, len(buffer) - 1)
        if cut >= 0 or position == 0:
            break
    complete = buffer.endswith(b"\n")
    raw = buffer[cut + 1 : -1] if complete else buffer[cut + 1 :]
    return Tail(start=position + cut + 1, raw=raw, complete=complete)


def move_aside(fd: int, tail: Tail, log: Path) -> dict[str, Any]:
    """Append the torn tail's bytes to <log>.torn (0600, never through a link, synced), then
    cut the log (``fd``) back to its last whole line. Returns the audit_torn_tail fields.

    The bytes are kept first: if that fails (the disk is still full) the log is left as it
    was and the caller's append fails, so nothing is ever lost.
    """
    kept = torn_path(log)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    out = os.open(kept, flags, 0o600)
    try:
        kept_at = os.fstat(out).st_size
        write_all(out, tail.raw + b"\n")  # the newline only separates one tear from the next
        os.fsync(out)
    finally:
        os.close(out)
    os.ftruncate(fd, tail.start)
    os.fsync(fd)
    return {
        "torn_offset": tail.start,
        "torn_bytes": len(tail.raw),
        "torn_sha256": hashlib.sha256(tail.raw).hexdigest(),
        "kept_in": str(kept),
        "kept_at": kept_at,
        "note": "an unfinished write (no newline, not a whole record), never acknowledged; "
        "its bytes were moved out of the log",
    }
