"""A version of the policy for `policy diff`: a path on disk, or a git revision of the
repository that holds the configured policy.

A revision's policy files (the ``*.toml`` files of the policy directory, or the one file) and
the session-policy files they name are copied out of git (``git cat-file``, an argv list, never
a shell) into a private temporary directory laid out as the repository is, then loaded by
jitctl.policy.load like any other: the same checks, the same meaning. Errors name
``REVISION:path``, not the temporary copy.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jitctl.config.tomlcheck import TomlError, parse_toml
from jitctl.errors import JitctlError, PolicyError, Unavailable, UsageError
from jitctl.policy.load import Policy, load_policy

GIT_TIMEOUT = 30  # seconds: a local git that takes longer is stuck
WORKING_TREE = "working tree"
REGULAR = ("100644", "100755")  # git modes of regular files (120000: a symbolic link)
# A revision to a commit; what follows is never read as an option, whatever it starts with.
_VERIFY = ("rev-parse", "--verify", "--quiet", "--end-of-options")


def is_path(spec: str) -> bool:
    """The contract's rule: an argument that exists on disk is a path, anything else a revision."""
    try:
        return Path(spec).exists()
    except (OSError, ValueError):  # too long to look up, or a NUL: not a path
        return False


def read_version(
    spec: str | None, configured: Callable[[], Path], warn: Callable[[str], None] | None = None
) -> Policy:
    """The policy ``spec`` names: None for the working tree's. ``configured`` gives the policy
    path of the config or $JITCTL_POLICY, asked only when needed (two paths need no config).
    ``warn`` hears of a path that is also a revision: whoever can write files where this runs
    (a pull request, in CI) could plant ``origin/main`` as a directory and be compared with it."""
    if spec is not None and is_path(spec):
        if warn is not None and _also_a_revision(spec, configured):
            warn(
                f"{spec!r} is a path here and also a git revision; comparing the path (to "
                "compare the revision, run from a directory the change cannot write to)"
            )
        return load_policy(Path(spec))
    if spec is None:
        return load_policy(configured())
    return policy_at(spec, configured())


def _also_a_revision(spec: str, configured: Callable[[], Path]) -> bool:
    """Whether ``spec`` names a commit of the configured policy's repository (any doubt: no)."""
    if spec.startswith(("./", "/", "../")):
        return False  # written as a path on purpose
    try:
        repo = Repo.holding(configured())
        return git(repo.top, *_VERIFY, f"{spec}^{{commit}}", what=None) is not None
    except JitctlError:  # no policy configured, no repository, no git: nothing to confuse
        return False


def policy_at(revision: str, path: Path) -> Policy:
    """The policy at ``path`` as it was at ``revision`` of the git repository holding it."""
    repo = Repo.holding(path)
    commit = repo.commit(revision)
    rel = repo.relative(path)
    with tempfile.TemporaryDirectory(prefix="jitctl-policy-") as tmp:
        root = Path(tmp)
        files = repo.extract_policy(commit, rel, root, revision)
        for file in files:
            repo.extract_session_policies(commit, file, root)
        try:
            return load_policy(root / rel if rel else root)
        except PolicyError as exc:
            raise PolicyError(_relabel(exc.message, root, revision), exc.hint) from None


def _relabel(message: str, root: Path, revision: str) -> str:
    """Paths in the temporary copy shown as REVISION:path."""
    return message.replace(f"{root}{os.sep}", f"{revision}:").replace(str(root), f"{revision}:")


class Repo:
    """The git repository holding the policy, asked through ``git -C TOP``."""

    def __init__(self, top: Path) -> None:
        self.top = top

    @classmethod
    def holding(cls, path: Path) -> Repo:
        start = path if path.is_dir() else path.parent
        while not start.is_dir() and start != start.parent:
            start = start.parent  # the policy may be gone from the working tree
        out = git(start, "rev-parse", "--show-toplevel", what=f"find the git repository of {path}")
        return cls(Path(out.decode("utf-8", "surrogateescape").strip()))

    def relative(self, path: Path) -> str:
        """``path`` inside the repository, as git names it ("" for the top)."""
        try:
            rel = path.resolve().relative_to(self.top.resolve())
        except ValueError:
            raise UsageError(
                f"the policy {path} is not inside the git repository at {self.top}",
                "give both versions as paths",
            ) from None
        return "" if rel == Path(".") else rel.as_posix()

    def commit(self, revision: str) -> str:
        """The commit ``revision`` names; never read as an option (--end-of-options)."""
        out = git(self.top, *_VERIFY, f"{revision}^{{commit}}", what=None)
        if out is None:
            raise UsageError(
                f"{revision!r} is neither a path that exists nor a revision of the git "
                f"repository at {self.top}",
                "give a commit, branch or tag (e.g. origin/main), or a policy file or directory",
            )
        commit: str = out.decode("ascii").strip()
        return commit

    def extract_policy(self, commit: str, rel: str, root: Path, revision: str) -> list[str]:
        """Copy the policy's .toml files at ``commit`` under ``root``; their paths."""
        kind = git(self.top, "cat-file", "-t", f"{commit}:{rel}", what=None)
        if kind is None:
            raise UsageError(
                f"{revision}:{rel or '.'}: the policy does not exist at that revision",
                "compare against a revision that has it, or give a path",
            )
        names = [rel] if kind.strip() == b"blob" else self._toml_in(commit, rel, revision)
        for name in names:
            self._copy(commit, name, root)
        return names

    def _toml_in(self, commit: str, rel: str, revision: str) -> list[str]:
        """The ``*.toml`` files directly in a tree, as load_policy picks them from a directory."""
        listing = git(self.top, "ls-tree", "-z", f"{commit}:{rel}", what=f"list {revision}:{rel}")
        found = []
        for entry in listing.split(b"\0"):
            meta, _, raw_name = entry.partition(b"\t")
            name = raw_name.decode("utf-8", "surrogateescape")
            if not name.endswith(".toml") or name.startswith(".") or b" blob " not in meta:
                continue
            if meta.split(b" ")[0].decode() not in REGULAR:
                raise UsageError(f"{revision}:{posixpath.join(rel, name)}: not a regular file")
            found.append(posixpath.join(rel, name))
        return found

    def extract_session_policies(self, commit: str, file: str, root: Path) -> None:
        """The session-policy files ``file``'s roles name by a relative path inside the
        repository (an absolute one is read from disk, as load_policy reads any file)."""
        for value in _session_policy_paths((root / file).read_bytes()):
            if value.startswith(("/", "~")):
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(file), value))
            if target == ".." or target.startswith("../"):
                continue  # outside the repository: load_policy says it does not exist
            self._copy(commit, target, root, missing_ok=True)

    def _copy(self, commit: str, name: str, root: Path, missing_ok: bool = False) -> None:
        blob = git(self.top, "cat-file", "blob", f"{commit}:{name}", what=None)
        if blob is None:
            if missing_ok:
                return  # load_policy names what is missing
            raise UsageError(f"cannot read {name} at {commit}")
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(blob)


def _session_policy_paths(raw: bytes) -> list[str]:
    """Each role's session_policy, as written (a broken file: none; load_policy reports it)."""
    try:
        roles: Any = parse_toml(raw)[0].get("roles", {})
    except TomlError:
        return []
    tables = roles.values() if isinstance(roles, dict) else ()
    return [
        t["session_policy"]
        for t in tables
        if isinstance(t, dict) and isinstance(t.get("session_policy"), str)
    ]


def git(cwd: Path, *args: str, what: str | None) -> Any:
    """git's stdout; on failure None when ``what`` is None, else a UsageError naming it."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError(
            "git is not installed, so a revision cannot be read",
            "install git, or give both versions as paths",
        ) from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"git did not answer within {GIT_TIMEOUT}s") from None
    if done.returncode == 0:
        return done.stdout
    if what is None:
        return None
    said = done.stderr.decode("utf-8", "replace").strip().splitlines()
    raise UsageError(f"cannot {what}: {said[-1] if said else 'git failed'}")
