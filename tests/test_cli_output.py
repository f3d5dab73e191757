"""Issue 21, the first hour again: what a new user sees, and where (data on stdout, chatter on
stderr), through the installed CLI."""

from __future__ import annotations

from tests.harness import Team

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def pending(
    team: Team, reason: str = "INC-1 look at the queue", role: str = "prod-readonly"
) -> str:
    out = team.run(ALICE, "request", role, "--reason", reason, "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_answers_go_to_stdout_and_quiet_never_hides_them(team):
    """Item 2: `whoami`, `status ID`, `doctor` and `audit verify` answer on stdout, so that
    `| grep` finds it, and `--quiet` silences chatter, not the answer."""
    team.pd_user(ALICE)
    request_id = pending(team, "INC-2 grep me")
    for quiet in ((), ("--quiet",)):
        status = team.run(ALICE, *quiet, "status", request_id)
        assert status.returncode == 0, status.stderr
        assert request_id in status.stdout and "INC-2 grep me" in status.stdout
        who = team.run(ALICE, *quiet, "whoami")
        assert who.returncode == 0, who.stderr
        assert "arn:aws:iam::123456789012:user/alice@example.com" in who.stdout
        doctor = team.run(ALICE, *quiet, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "audit log" in doctor.stdout and "✓" in doctor.stdout
        verify = team.run(ALICE, *quiet, "audit", "verify")
        assert verify.returncode == 0, verify.stderr
        assert "hash chain intact" in verify.stdout
