"""The approver's terminal experience, through a real pseudo-terminal: pick a request, confirm."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from tests.harness import Team
from tests.test_cli_request import on_call

ALICE, BOB = "alice@example.com", "bob@example.com"


class Terminal:
    """`jitctl` on a pty: stdin, stdout and stderr are all the terminal, as for a person."""

    def __init__(
        self, team: Team, user: str, *args: str, columns: int | None = None, **extra: str
    ) -> None:
        self.master, slave = pty.openpty()
        env = team.env(user)
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm"
        env.update(extra)
        if columns is not None:  # the terminal's own width, not $COLUMNS, as for a person
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
            env.pop("COLUMNS", None)
        self.proc = subprocess.Popen(
            [team.exe, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30, *, times: int = 1) -> None:
        """Read the screen until ``text`` has appeared ``times`` times in all."""
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < times:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; screen so far:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        assert self.seen.count(text) >= times, f"never saw {text!r}; screen:\n{self.seen}"

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self) -> int:
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


def pending(team: Team, reason: str) -> str:
    out = team.run(ALICE, "request", "prod-readonly", "--reason", reason, "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_approve_without_an_id_offers_the_pending_requests(team):
    first = pending(team, "INC-20 first")
    second = pending(team, "INC-21 second")
    term = Terminal(team, BOB, "approve")
    term.expect("approve which one")
    assert first in term.seen and second in term.seen
    term.send("2\n")  # newest first: 2 is the older one
    term.expect("Approve " + first + "?")
    assert "INC-20 first" in term.seen and "alice@example.com" in term.seen
    term.send("y\n")
    assert term.finish() == 0
    states = {
        r["request_id"]: r["status"] for r in json.loads(team.run(BOB, "list", "--json").stdout)
    }
    assert states == {first: "approved", second: "pending"}


def screen_lines(term: Terminal) -> list[str]:
    """What the terminal shows, line by line, without colour codes."""
    return [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in term.seen.splitlines()]


def test_the_picker_shows_one_numbered_table_with_reasons_newest_first(team):
    first = pending(team, "INC-30 first")
    second = pending(team, "INC-31 second")
    term = Terminal(team, BOB, "approve")
    term.expect("approve which one")
    lines = screen_lines(term)
    rows = [line.split() for line in lines if re.match(r"\d+ ", line)]
    assert [row[:2] for row in rows] == [["1", second], ["2", first]]
    assert rows[0][-2:] == ["INC-31", "second"] and rows[1][-2:] == ["INC-30", "first"]
    header = next(line for line in lines if line.startswith("#"))
    assert header.split() == ["#", "ID", "ROLE", "REQUESTER", "AGE", "REASON"]
    assert sum(first in line for line in lines) == 1  # one list, not a table and then another
    term.send("1\n")
    term.expect("Approve " + second + "?")
    term.send("n\n")
    assert term.finish() == 130


def test_declining_the_confirmation_records_nothing(team):
    request_id = pending(team, "INC-22")
    term = Terminal(team, BOB, "approve", request_id)
    term.expect(f"Approve {request_id}?")
    term.send("n\n")
    assert term.finish() == 130
    assert json.loads(team.run(BOB, "status", request_id, "--json").stdout)["status"] == "pending"
    assert not team.audit_log(BOB).exists()


def test_waiting_shows_a_live_status_line_with_the_approve_command(team):
    term = Terminal(team, ALICE, "request", "prod-readonly", "--reason", "INC-23")
    term.expect("Ctrl-C cancels")  # the live status line
    assert "waiting" in term.seen and "bob@example.com" in term.seen
    request_id = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)[0]["request_id"]
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    term.expect("credentials in profile")
    assert term.finish() == 0


def test_request_without_a_reason_asks_for_one_on_a_terminal(team):
    on_call(team, ALICE)
    term = Terminal(team, ALICE, "request", "prod-readonly")
    term.expect("reason (an incident id helps):")
    term.send("INC-40 asked at the prompt\n")
    term.expect("credentials in profile")
    assert term.finish() == 0
    [req] = json.loads(team.run(ALICE, "list", "--json").stdout)
    assert req["reason"] == "INC-40 asked at the prompt" and req["status"] == "issued"


def test_request_without_a_reason_never_prompts_when_stdin_is_not_a_terminal(team):
    out = team.run(ALICE, "request", "prod-readonly", stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "a reason is required" in out.stderr
    assert "reason (an incident id helps)" not in out.stderr


def test_help_at_110_columns_shows_every_summary_whole(team):
    term = Terminal(team, ALICE, "--help", columns=110)
    term.expect("broker")
    assert term.finish() == 0
    lines = screen_lines(term)
    assert not [ln for ln in lines if "…" in ln or (ln.endswith("...") and "Usage" not in ln)]
    assert max(len(line) for line in lines) <= 110
    text = " ".join(" ".join(lines).split())
    assert "otherwise wait for a peer's approval" in text
    assert "never prompts" in text and "say how to fix what fails" in text


def test_the_wait_line_fits_a_narrow_terminal(team):
    term = Terminal(team, ALICE, "request", "prod-readonly", "--reason", "INC-41", columns=60)
    term.expect("Ctrl-C cancels")
    term.expect("Ctrl-C cancels", times=term.seen.count("Ctrl-C cancels") + 3)  # 3 refreshes
    live = term.seen[term.seen.index("waiting") - 40 :]
    assert "\x1b[1A" not in live  # never a second line to climb back over: it fits
    for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", live)):
        assert len(line.rstrip()) <= 60, line
    assert "jitctl approve r-" in live
    request_id = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)[0]["request_id"]
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    term.expect("credentials in profile")
    assert term.finish() == 0
