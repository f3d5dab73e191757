"""The demo's stage: a command shown as a person would type it, run, and checked.

The story (jitctl.demo.story) and its chapters (broker_story, incident_story) are played on
one ``Stage``; the chapters need only the stage, so they never import the story.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from jitctl.demo.failure import StepFailed
from jitctl.demo.team import DemoTeam

if TYPE_CHECKING:
    from jitctl.demo.slacksim import SlackSim

_BARE = re.compile(r"^[A-Za-z0-9@%+=:,./_-]+$")


def shell_quote(arg: str) -> str:
    """How a person would type ``arg`` in a shell: bare when safe, else in double quotes."""
    return arg if _BARE.match(arg) else '"' + re.sub(r'([\\"$`])', r"\\\1", arg) + '"'


class Stage:
    """How the demo tells and does a step: the commands shown as a person types them, run,
    and checked. The story and its chapters are played on it."""

    def __init__(self, team: DemoTeam, write: Callable[[str], None]) -> None:
        self.team = team
        self.write = write
        self.cleanup = ExitStack()  # what a step left running (the broker): ended after the story
        self.slack: SlackSim | None = None  # Slack's stand-in, started with the broker

    # -- telling ---------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            self.write(f"# {line}".rstrip())

    def prompt(self, name: str, argv: Sequence[str], note: str = "") -> None:
        self.write(f"{name}$ {' '.join(shell_quote(a) for a in argv)}{note}")

    def output(self, done: subprocess.CompletedProcess[str]) -> None:
        for stream in (done.stderr, done.stdout):  # jitctl talks on stderr, data on stdout
            for line in (stream or "").rstrip("\n").splitlines():
                self.write(line)

    # -- doing -----------------------------------------------------------------------------
    def jitctl(
        self,
        name: str,
        *args: str,
        expect: int = 0,
        shows: Iterable[str] = (),
        broker: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """``jitctl ARGS`` as ``name``, shown and checked; ``broker``: as the broker's client."""
        self.prompt(name, ["jitctl", *args])
        done = self.team.run(name, *args, broker=True) if broker else self.team.run(name, *args)
        self.output(done)
        check(done, f"{name}$ jitctl {' '.join(map(shell_quote, args))}", expect, shows)
        return done

    def shown(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        run: Sequence[str] | None = None,
        note: str = "",
        expect: int = 0,
        shows: Iterable[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` shown as ``name`` types it, run (as ``run``, if given) with ``env``, checked."""
        self.prompt(name, argv, note)
        command = run or self.team.command(*argv[1:])  # argv is `jitctl ...` unless run says
        done = subprocess.run(
            command,
            env=env,
            cwd=self.team.root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        self.output(done)
        check(done, f"{name}$ {' '.join(map(shell_quote, argv))}", expect, shows)
        return done

    def quietly(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A helper call the story does not show (e.g. polling for a request id)."""
        return self.team.run(name, *args)


def check(
    done: subprocess.CompletedProcess[str], what: str, expect: int, shows: Iterable[str]
) -> None:
    if done.returncode != expect:
        raise StepFailed(f"`{what}` exited {done.returncode}, expected {expect}")
    said = f"{done.stdout}\n{done.stderr}"
    for text in shows:
        if text not in said:
            raise StepFailed(f"`{what}` did not say {text!r}")
