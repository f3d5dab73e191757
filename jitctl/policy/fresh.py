"""Whether the policy on disk is still the one a long-running process loaded (the broker's).

A process that serves many calls loads the policy once, but a change to it must take effect
at the next call: a role removed, an approver dropped. Reading and checking every file on
every call costs milliseconds; asking the filesystem whether any of them changed costs a
directory listing and a few ``stat`` calls. ``fingerprint`` is what is compared: for each
policy file and each session policy file the loaded roles name, its device, inode, size,
mtime and ctime (ctime moves on every write and cannot be set back by the writer), and the
list of ``*.toml`` files itself, so a file added or removed counts too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitctl.policy.load import Policy

Fingerprint = tuple[tuple[str, tuple[int, ...] | None], ...]


def fingerprint(path: Path, policy: Policy | None) -> Fingerprint:
    """What the policy at ``path`` (a file or a directory of ``*.toml``) and the session
    policy files of ``policy`` (the one loaded from it) look like on disk now."""
    files = _policy_files(path)
    if policy is not None:
        named = {r.session_policy_path for r in policy.roles.values() if r.session_policy_path}
        files += sorted(str(p) for p in named)
    return tuple((name, _stat(name)) for name in files)


def _policy_files(path: Path) -> list[str]:
    try:
        names = sorted(os.listdir(path))
    except NotADirectoryError:
        return [str(path)]
    except OSError:
        return [str(path)]  # missing or unreadable: its stat (None) says so
    return [str(path), *(str(path / n) for n in names if n.endswith(".toml"))]


def _stat(name: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
