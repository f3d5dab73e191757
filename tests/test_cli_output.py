"""Issue 21, the first hour again: what a new user sees, and where (data on stdout, chatter on
stderr), through the installed CLI."""

from __future__ import annotations

import json

from tests.harness import Team
from tests.test_cli_request import on_call
from tests.test_cli_tty import Terminal, screen_lines

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


def _whole_on_one_line(text: str, *words: str) -> None:
    for word in words:
        assert any(word in line for line in text.splitlines()), (word, text)


def test_ids_and_role_names_never_wrap_on_a_narrow_terminal_or_a_pipe(team):
    """Item 3: at 60 columns, and piped (no COLUMNS: 80), `list`, `grants` and `roles` keep
    every id and role name whole on one line, so that copying and `grep` work."""
    on_call(team, ALICE)
    reason = "INC-3 a long reason that goes on and on about the database and the queue behind it"
    issued = team.run(ALICE, "request", "prod-readonly", "--reason", reason, "--no-wait")
    assert issued.returncode == 0, issued.stderr
    ids = [issued.stdout.strip(), pending(team, reason, role="prod-admin")]
    env = team.env(ALICE)
    del env["COLUMNS"]
    words = {"list": ["prod-admin", *ids], "grants": ids[:1], "roles": ["prod-admin"]}
    for command, whole in words.items():
        piped = team.run(ALICE, command, env=env)
        assert piped.returncode == 0, piped.stderr
        _whole_on_one_line(piped.stdout, "prod-readonly", *whole)
        if command != "roles":  # piped output is never squeezed: the reason is whole too
            _whole_on_one_line(piped.stdout, reason)
        term = Terminal(team, ALICE, command, columns=60)
        term.expect("prod-readonly")
        assert term.finish() == 0
        lines = screen_lines(term)
        _whole_on_one_line("\n".join(lines), "prod-readonly", *whole)
        assert max(len(line) for line in lines) <= 60, lines


def test_deciding_a_request_that_is_no_longer_pending_exits_by_the_contract(team):
    """Item 9: approving an expired request is 4 (it expired before a decision), one already
    approved is 2 naming who approved it, one an approver denied is 3 naming who."""
    from datetime import UTC, datetime, timedelta

    from jitctl.context import Environment

    lapsed, approved, denied = (pending(team, f"INC-9 {n}") for n in range(3))
    store = Environment(environ=team.env(ALICE)).store  # its TTL (30m) passes, as a sweep sees
    store.expire(lapsed, now=datetime.now(UTC) + timedelta(minutes=31))
    out = team.run(BOB, "approve", lapsed, "--yes")
    assert out.returncode == 4 and f"request {lapsed} expired" in out.stderr, out.stderr
    assert team.run(BOB, "approve", approved, "--yes").returncode == 0
    out = team.run(CAROL, "approve", approved, "--yes")
    assert out.returncode == 2, out.stderr
    assert f"request {approved} is already approved by {BOB}" in out.stderr
    assert team.run(CAROL, "deny", denied, "--reason", "use the runbook", "--yes").returncode == 0
    for verb in (("approve",), ("deny", "--reason", "me too")):
        out = team.run(BOB, *verb, denied, "--yes")
        assert out.returncode == 3, out.stderr
        assert f"already denied by {CAROL}: use the runbook" in out.stderr


def test_an_issued_grant_carries_ends_at_and_expires_at_stays_the_requests_ttl(team):
    """Item 15: `expires_at` keeps one meaning (a pending request's TTL: 30m for this role);
    when access ends is its own field, `ends_at`, in request, status, list and grants JSON."""
    import dataclasses
    from datetime import timedelta

    from jitctl.models import public_dict
    from jitctl.timeutil import parse_rfc3339, rfc3339

    on_call(team, ALICE)
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "INC-15", "--duration", "1h", "--json"
    )
    assert out.returncode == 0, out.stderr
    issued = json.loads(out.stdout)
    created = parse_rfc3339(issued["created_at"])
    assert parse_rfc3339(issued["expires_at"]) - created == timedelta(minutes=30)
    ends = parse_rfc3339(issued["ends_at"])
    assert timedelta(minutes=59) <= ends - created <= timedelta(hours=1, seconds=5)
    rid = issued["request_id"]
    status = json.loads(team.run(ALICE, "status", rid, "--json").stdout)
    [listed] = json.loads(team.run(ALICE, "list", "--json").stdout)
    [grant] = json.loads(team.run(ALICE, "grants", "--json").stdout)
    for doc in (status, listed, grant):
        assert (doc["ends_at"], doc["expires_at"]) == (issued["ends_at"], issued["expires_at"])
    waiting = json.loads(
        team.run(ALICE, "status", pending(team, role="prod-admin"), "--json").stdout
    )
    assert waiting["ends_at"] is None
    # revoked: access ended when it was revoked, before its credentials' own end
    revoked = dataclasses.replace(
        env_store(team).get(rid), status="revoked", revoked_at=created + timedelta(minutes=5)
    )
    assert public_dict(revoked)["ends_at"] == rfc3339(created + timedelta(minutes=5))


def env_store(team: Team):
    from jitctl.context import Environment

    return Environment(environ=team.env(ALICE)).store


def test_deny_and_revoke_without_a_reason_say_so_first_in_their_own_words(team):
    """Item 4: `deny ID` on a terminal used to ask "Deny ...? [y/N]" and only after `y` say a
    reason was required, in the requester's words; `revoke` used the requester's words too."""
    request_id = pending(team, "INC-4")
    term = Terminal(team, BOB, "deny", request_id)
    term.expect("a reason is required")
    assert term.finish() == 2
    assert "Deny" not in term.seen and "[y/N]" not in term.seen
    assert 'pass --reason "why not" (the requester sees it)' in term.seen
    revoke = team.run(ALICE, "revoke", request_id)
    assert revoke.returncode == 2 and "a reason is required" in revoke.stderr
    assert "why access ends now" in revoke.stderr and "INC-123" not in revoke.stderr
    assert json.loads(team.run(BOB, "status", request_id, "--json").stdout)["status"] == "pending"


def test_the_waiting_line_stops_naming_an_approver_who_approved(team):
    """Item 8: after bob's approval the line said "(1/2 approvals) ... from bob, carol"."""
    term = Terminal(team, ALICE, "request", "prod-admin", "--reason", "INC-8", columns=200)
    term.expect("Ctrl-C cancels")
    assert BOB in term.seen and CAROL in term.seen
    request_id = json.loads(team.run(BOB, "list", "--pending", "--json").stdout)[0]["request_id"]
    assert team.run(BOB, "approve", request_id, "--yes").returncode == 0
    term.expect("(1/2 approvals)")
    term.expect("Ctrl-C cancels", timeout=30)
    start = term.seen.rindex("(1/2 approvals)")
    term.seen = term.seen[start:]
    term.expect("Ctrl-C cancels")
    line = term.seen[: term.seen.index("Ctrl-C cancels")]
    assert f"from {CAROL}" in line and BOB not in line, line
    assert team.run(CAROL, "approve", request_id, "--yes").returncode == 0
    term.expect("credentials in profile")
    assert term.finish() == 0


def test_a_short_duration_is_not_blamed_on_the_on_call_shift(team):
    """Item 6: `--duration 10m` said "your on-call shift ends in 10m" (the shift has hours
    left; the 10 minutes came from the flag)."""
    from datetime import UTC, datetime, timedelta

    from jitctl.lifecycle.request_rules import session_seconds

    on_call(team, ALICE)
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-6", "--duration", "10m")
    assert out.returncode == 0, out.stderr
    assert "on-call shift" not in out.stderr
    assert "you asked for 10m, but STS sessions last at least 15m" in out.stderr
    now = datetime(2026, 12, 1, tzinfo=UTC)
    _, note = session_seconds(timedelta(hours=1), now + timedelta(minutes=5), now)
    assert note is not None and note.startswith("your on-call shift ends in 5m")


def test_running_jitctl_as_a_jit_session_says_switch_back_not_map_it(team):
    """Item 14: with AWS_PROFILE=jit-prod-readonly jitctl suggested mapping that session in
    [identities], which would let whoever holds a grant act as its person."""
    on_call(team, ALICE)
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-14").returncode == 0
    env = team.env(ALICE, AWS_PROFILE="jit-prod-readonly")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key)
    out = team.run(ALICE, "whoami", env=env)
    assert out.returncode == 2, out.stderr
    assert "switch back to your own credentials" in out.stderr
    assert "session of prod-readonly, which jitctl issued" in out.stderr
    assert "[identities]" not in out.stderr and "session_name_roles" not in out.stderr


def test_no_color_means_no_colour_and_still_prompts(team):
    """Item 10: NO_COLOR also turned off the reason prompt and the approve picker."""
    import re

    on_call(team, ALICE)
    term = Terminal(team, ALICE, "request", "prod-readonly", NO_COLOR="1")
    term.expect("reason (an incident id helps):")
    term.send("INC-10 asked although NO_COLOR\n")
    term.expect("credentials in profile")
    assert term.finish() == 0
    assert not re.search(r"\x1b\[[0-9;]*3[0-9]m", term.seen), term.seen  # no colour at all
    request_id = pending(team, "INC-10", role="prod-admin")
    picker = Terminal(team, BOB, "approve", NO_COLOR="1")
    picker.expect("approve which one")
    assert request_id in picker.seen
    picker.send("1\n")
    picker.expect(f"Approve {request_id}?")
    picker.send("n\n")
    assert picker.finish() == 130


def test_without_any_config_the_store_used_is_named(team):
    """Item 11: an approver who forgot the team's config heard "no requests" from a silent,
    private store; now stderr says no config was found and which store answered."""
    pending(team, "INC-11")
    env = team.env(BOB, JITCTL_POLICY=str(team.policy_dir))
    del env["JITCTL_CONFIG"]
    out = team.run(BOB, "list", env=env)
    assert out.returncode == 0, out.stderr
    assert "no config file" in out.stderr and "JITCTL_CONFIG" in out.stderr
    assert "requests.db" in out.stderr and "not your team's" in out.stderr
    configured = team.run(BOB, "list")
    assert "no config file" not in configured.stderr and "INC-11" in configured.stdout


def test_the_picker_asks_again_after_a_bad_choice_and_every_id_command_has_one(team):
    """Item 16: a bad choice used to end the picker (as "no request '7'"); deny, cancel, wait
    and revoke had no picker at all."""
    first = pending(team, "INC-16 first", role="prod-admin")
    second = pending(team, "INC-16 second", role="prod-admin")
    term = Terminal(team, BOB, "deny", "--reason", "not now")
    term.expect("deny which one")
    term.send("7\n")
    term.expect("is not one of these")
    term.send("2\n")  # newest first: 2 is the older one
    term.expect(f"Deny {first}?")
    term.send("y\n")
    assert term.finish() == 0
    cancel = Terminal(team, ALICE, "cancel")
    cancel.expect("cancel which one")
    assert second in cancel.seen and first not in cancel.seen  # only what may be cancelled
    cancel.send(second + "\n")
    cancel.expect(f"cancelled {second}")
    assert cancel.finish() == 0
    states = {
        r["request_id"]: r["status"] for r in json.loads(team.run(BOB, "list", "--json").stdout)
    }
    assert states == {first: "denied", second: "cancelled"}
    waiting = Terminal(team, ALICE, "wait")
    waiting.expect("you have no pending or approved requests to wait for")
    assert waiting.finish() == 2
    on_call(team, ALICE)
    issued = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-16", "--no-wait")
    revoke = Terminal(team, ALICE, "revoke", "--reason", "done with it")
    revoke.expect("revoke which one")
    assert issued.stdout.strip() in revoke.seen
    revoke.proc.kill()  # seen what it offers; nothing chosen, nothing revoked
    revoke.finish()
    scripted = team.run(ALICE, "cancel")
    assert scripted.returncode == 2 and "which request? pass REQUEST_ID" in scripted.stderr


def test_small_things_a_new_user_hits(team):
    """Item 18: a missing ROLE lists the roles; a --json command that fails still prints one
    JSON document on stdout (the error, the broker API's shape), and only one."""
    out = team.run(ALICE, "request", "--reason", "INC-18")
    assert out.returncode == 2 and "roles: prod-admin, prod-readonly" in out.stderr, out.stderr
    failed = team.run(ALICE, "status", "r-nope", "--json")
    assert failed.returncode == 2
    assert json.loads(failed.stdout) == {
        "error": {
            "message": "no request 'r-nope'",
            "hint": "see `jitctl list --pending`",
            "exit_code": 2,
        }
    }
    assert "no request 'r-nope'" in failed.stderr
    team.pd_user(ALICE)
    log = team.audit_log(ALICE)
    pending(team, "INC-18 tamper")
    log.write_text(log.read_text().replace("INC-18 tamper", "INC-18 edited"))
    verify = team.run(ALICE, "audit", "verify", "--json")
    assert verify.returncode == 6
    assert json.loads(verify.stdout)["failure"]  # its own document, no second one after it


def test_usage_and_help_show_plain_metavars(team):
    """Item 18: usage showed `{role}` and options `<str>`."""
    from jitctl.cli.main import COMMANDS

    out = team.run(ALICE, "request", "--help")
    assert out.stdout.startswith("Usage: jitctl request [OPTIONS] ROLE\n"), out.stdout
    assert "--reason TEXT" in out.stdout and "--duration DURATION" in out.stdout
    for command in dict.fromkeys(COMMANDS):
        shown = team.run(ALICE, command, "--help").stdout
        assert "<str>" not in shown and "{" not in shown.splitlines()[0], (command, shown)
