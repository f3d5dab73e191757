"""`jitctl demo`: the whole story on a machine with no AWS or PagerDuty account.

Starts moto's server (the ``demo`` extra) and the PagerDuty simulator on 127.0.0.1, seeds a
small team in a fresh directory, then either plays the story with the real commands
(:mod:`jitctl.demo.story`) or, with ``serve``, keeps the endpoints up and prints the
environment to export until Ctrl-C. The directory is removed at the end unless kept.

Nothing here is imported by ``jitctl --help``; moto and boto3 are imported inside functions.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from jitctl.errors import Interrupted, JitctlError, UsageError

if TYPE_CHECKING:
    from jitctl.demo.slacksim import SlackSim
    from jitctl.demo.team import DemoTeam

Write = Callable[[str], None]


def stdout_writer(line: str) -> None:
    """One line on stdout, flushed (a pipe reader sees it at once), never an encoding error."""
    encoding = sys.stdout.encoding or "utf-8"
    sys.stdout.write(line.encode(encoding, "replace").decode(encoding) + "\n")
    sys.stdout.flush()


def run(*, serve: bool = False, keep: Path | None = None, write: Write = stdout_writer) -> int:
    """Play the story (0: every step as expected, 1: one was not), or serve until Ctrl-C."""
    root, remove = _workspace(keep)
    try:
        with _isolated_environ(root):
            return _serve(root, write, remove) if serve else _play(root, write, remove)
    except KeyboardInterrupt:
        raise Interrupted("demo interrupted; its endpoints are stopped") from None
    finally:
        if remove:
            shutil.rmtree(root, ignore_errors=True)
        else:
            write(f"# files kept in {root}")


def _workspace(keep: Path | None) -> tuple[Path, bool]:
    """(directory, remove at the end): a fresh private temp dir, or the empty one to keep."""
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="jitctl-demo-")).resolve(), True
    keep = keep.expanduser().resolve()
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise UsageError(f"--keep {keep}: not an empty directory", "name a new or empty one")
    keep.mkdir(mode=0o700, parents=True, exist_ok=True)
    return keep, False


@contextmanager
def _isolated_environ(root: Path) -> Iterator[None]:
    """This process's own AWS calls (seeding, moto) see none of the real AWS settings or files."""
    from jitctl.demo.team import outside_free

    saved = dict(os.environ)
    isolated = outside_free(os.environ)
    admin = root / "admin"
    isolated.update(
        AWS_CONFIG_FILE=str(admin / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(admin / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    os.environ.clear()
    os.environ.update(isolated)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _team(root: Path) -> Iterator[DemoTeam]:
    from jitctl.demo.team import Endpoints, init_store, seed

    endpoints = Endpoints(root)
    try:
        endpoints.start()
        team = seed(root, endpoints)
        done = init_store(team)
        if done.returncode != 0:
            raise JitctlError(f"demo setup: jitctl init failed: {done.stderr.strip()}")
        yield team
    finally:
        endpoints.stop()


def _play(root: Path, write: Write, remove: bool) -> int:
    from jitctl.demo.story import Story
    from jitctl.demo.team import ESCALATION_POLICY, email

    write("# jitctl demo: AWS (moto's server) and PagerDuty (a simulator) on 127.0.0.1 only.")
    with _team(root) as team:
        write(f"# AWS {team.aws_url}, PagerDuty {team.pd.url}; files in {root}")
        write(
            f"# The team: {email('alice')} (on call, {ESCALATION_POLICY} level 1), "
            f"{email('dave')} (level 2),"
        )
        write(f"#   {email('bob')} (sre), {email('carol')} (security). Policy: {team.policy_file}")
        steps, failure = Story(team, write).play()
    write("")
    if failure is not None:
        sys.stderr.write(f"jitctl demo: {failure}\n")
        if remove:
            sys.stderr.write("jitctl demo: rerun with --keep DIR to keep the files for a look\n")
        return 1
    write(f"# All {steps} steps behaved as expected.")
    write("# Rehearse your own runbook against the same setup: jitctl demo --serve")
    return 0


def _serve(root: Path, write: Write, remove: bool) -> int:
    from jitctl.demo import gate
    from jitctl.demo.runbook import DB_CLUSTER, DB_INSTANCE, PERSONA_UNSET
    from jitctl.demo.slack_story import stand_in
    from jitctl.demo.team import PEOPLE, email

    stop = threading.Event()
    with _team(root) as team, ExitStack() as running:
        keys = gate.add_broker(team)
        slack = running.enter_context(stand_in(team, write))  # before the broker reads [slack]
        running.enter_context(gate.serving(team, keys))
        running.enter_context(_stop_on_signals(stop))
        write(f"# jitctl demo --serve: AWS (moto) {team.aws_url}, PagerDuty {team.pd.url}")
        write(f"# team in {root}; policy {team.policy_file}")
        write(f"# Act as {email('alice')} (on call) in your shell; to be someone (else) again:")
        for name in PEOPLE:
            write(f"#   {email(name)}: source {shlex.quote(str(team.env_file(name)))}")
        write(
            "# Direct mode here: the local AWS does not enforce IAM, so after `jitctl revoke`"
            " (or past a grant's end) AWS calls keep succeeding; the broker below, and"
            " `jitctl demo`, show the gate closed"
        )
        write("unset " + " ".join(PERSONA_UNSET))
        for key, value in team.exports("alice").items():
            write(f"export {key}={shlex.quote(value)}")
        write('# try: jitctl whoami; jitctl request prod-readonly --reason "INC-1 test"')
        write(
            f"# The runbook in docs/runbooks.md works here: RDS cluster {DB_CLUSTER}, instance {DB_INSTANCE}"
            " (pass --endpoint-url to the AWS CLI v1 for RDS)"
        )
        _tell_broker(team, write)
        _tell_slack(team, slack, write)
        write("# ready; Ctrl-C stops the endpoints" + (" and removes the files" if remove else ""))
        while not stop.wait(0.5):
            pass
    write("# stopped")
    return 0


def _tell_slack(team: DemoTeam, slack: SlackSim, write: Write) -> None:
    """Slack's stand-in: what the broker posts there is shown here; a click is one command."""
    from jitctl.demo.slack_story import slack_user

    write(f"# Slack's stand-in: {slack.api_url}; the messages the broker sends it show up here.")
    write("# prod-admin takes Slack decisions: request it through the broker, then click as bob:")
    write(
        f"#   {shlex.quote(sys.executable)} -m jitctl.demo.slacksim approve {team.broker_url} "
        f"REQUEST_ID {slack_user('bob')}"
    )


def _tell_broker(team: DemoTeam, write: Write) -> None:
    """Where the team's broker listens, and how to be its client (the roles still trust the
    account here, so direct mode works too; `jitctl demo` shows the gate closed)."""
    from jitctl.demo import gate

    gate.write_client_configs(team)
    config = team.client_config("alice")
    write(f"# A broker for this team listens on {team.broker_url} (server id {gate.SERVER_ID}).")
    write(f"# A client's whole config, e.g. alice's {config}:")
    for line in config.read_text(encoding="utf-8").splitlines():
        write(f"#   {line}")
    write(f"# Go through the broker: export JITCTL_CONFIG={shlex.quote(str(config))}")
    write('# then try: jitctl doctor; jitctl request prod-readonly --reason "INC-2 test"')


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP set ``stop`` (so the servers are stopped cleanly)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [signal.SIGINT, signal.SIGTERM] + (
        [signal.SIGHUP] if hasattr(signal, "SIGHUP") else []
    )
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
