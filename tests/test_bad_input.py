"""Issue 9, break 11: bad input is one line on stderr and exit 2, never a traceback or exit 1;
and nothing another person stored can stop your `list` or `status`. The installed CLI, with
moto's server and the PagerDuty simulator behind it (tests/harness.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.harness import Team

ALICE, BOB = "alice@example.com", "bob@example.com"
HUGE = "99999999999999999999h"
DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"


def refused(out, *needles: str) -> str:
    """Exit 2, exactly one line on stderr, no traceback; that line."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "unexpected error" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def pending(team: Team) -> str:
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-11 disk", "--no-wait")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def listed(team: Team) -> list[dict]:
    out = team.run(BOB, "list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --- undecodable bytes on the command line --------------------------------------------------


def test_reason_with_invalid_utf8_is_refused_and_nothing_is_recorded(team):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", b"INC-1 \xff\xfe", "--no-wait")
    refused(out, "--reason", "not valid UTF-8", "INC-1 \\xff\\xfe")
    assert listed(team) == []
    assert team.audit_records(ALICE) == []


def test_decision_reason_with_invalid_utf8_is_refused(team):
    request_id = pending(team)
    out = team.run(BOB, "approve", request_id, "--reason", b"ok \xc3")
    refused(out, "--reason", "not valid UTF-8")
    assert listed(team)[0]["status"] == "pending"


@pytest.mark.parametrize("command", ["status", "approve", "cancel", "wait"])
def test_request_id_with_invalid_utf8_is_refused(team, command):
    refused(team.run(ALICE, command, b"r-\xff"), "argument 2", "not valid UTF-8", "r-\\xff")


# --- durations that overflow ----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--duration", "--timeout"])
def test_huge_duration_flags_are_refused(team, flag):
    out = team.run(ALICE, "request", "prod-readonly", "--reason", "INC-1", flag, HUGE)
    refused(out, flag, "the longest is")
    assert listed(team) == []


def test_a_duration_with_thousands_of_digits_is_refused(team):
    out = team.run(
        ALICE, "request", "prod-readonly", "--reason", "x", "--duration", "9" * 5000 + "s"
    )
    refused(out, "--duration", "the longest is")


# --- the config file -------------------------------------------------------------------------


def config_with(team: Team, extra: str | bytes) -> None:
    base = team.config.read_bytes()
    team.config.write_bytes(base + (extra.encode() if isinstance(extra, str) else extra))


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (b"# caf\xe9\n", ("config.toml", "not UTF-8")),
        ("[notify]\n" + DEEP, ("config.toml", "nested too deeply")),
        (f'[notify]\ntimeout = "{HUGE}"\n', ("[notify] timeout", "the longest is")),
        ('[notify]\nwebhook_url = "http://[::1"\n', ("webhook_url", "Invalid IPv6 URL")),
        ('[notify]\nwebhook_url = "https://hooks.example.com:99999/x"\n', ("webhook_url",)),
        ('[notify]\nwebhook_url = "ftp://hooks.example.com/x"\n', ("not an http(s) URL",)),
    ],
    ids=["not-utf8", "deep", "huge-timeout", "bad-ipv6", "bad-port", "not-http"],
)
def test_bad_config_is_one_line_and_exit_2(team, extra, needles):
    config_with(team, extra)
    for user, args in ((BOB, ("list",)), (ALICE, ("request", "prod-readonly", "--reason", "x"))):
        refused(team.run(user, *args), *needles)


# --- policy files ----------------------------------------------------------------------------


def policy_with(team: Team, text: str | bytes) -> Path:
    path = team.policy_dir / "team.toml"
    base = path.read_bytes()
    path.write_bytes(base + (text.encode() if isinstance(text, str) else text))
    return path


def validate(team: Team) -> tuple[int, str]:
    out = team.run(BOB, "policy", "validate", str(team.policy_dir))
    assert "Traceback" not in out.stderr and "unexpected error" not in out.stderr, out.stderr
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b"# caf\xe9\n", "not UTF-8"),
        ("[deep]\n" + DEEP, "nested too deeply"),
        (
            '[roles.huge]\narn = "arn:aws:iam::123456789012:role/huge"\n'
            f'max_duration = "{HUGE}"\n[roles.huge.approval]\napprovers = ["group:sre"]\n',
            "max_duration: invalid duration",
        ),
        (
            '[roles.slow]\narn = "arn:aws:iam::123456789012:role/slow"\n'
            '[roles.slow.approval]\napprovers = ["group:sre"]\nrequest_ttl = "999999999h"\n',
            "request_ttl",
        ),
        (
            '[roles.slow]\narn = "arn:aws:iam::123456789012:role/slow"\n'
            '[roles.slow.approval]\napprovers = ["group:sre"]\nrequest_ttl = "30d"\n',
            "request_ttl",
        ),
    ],
    ids=["not-utf8", "deep", "huge-max-duration", "huge-request-ttl", "bad-request-ttl"],
)
def test_bad_policy_is_refused_by_validate_and_every_command(team, text, needle):
    policy_with(team, text)
    code, output = validate(team)
    assert code == 2 and needle in output, output
    refused(team.run(ALICE, "request", "prod-readonly", "--reason", "x"), needle)


def test_a_week_long_request_ttl_still_works(team):
    # The bound is generous: 168h is accepted and a request under it is recorded.
    text = (
        (team.policy_dir / "team.toml")
        .read_text()
        .replace('request_ttl = "30m"', 'request_ttl = "168h"')
    )
    (team.policy_dir / "team.toml").write_text(text)
    assert validate(team)[0] == 0
    assert pending(team)


# --- what someone else stored ---------------------------------------------------------------

ODD = "\x1b[31mred\x1b[0m\x07 [link=https://evil.example]click[/link] [yellow] \u202eevil"


def tamper(team: Team, request_id: str, reason_sql: str, *params) -> None:
    """Write straight into the SQLite row, as anyone with write access to the file can."""
    db = team.root / "requests.db"
    with sqlite3.connect(db) as conn:
        (body,) = conn.execute(
            "SELECT body FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        record = json.loads(body)
        record["reason"] = "@@REASON@@"
        before, after = json.dumps(record).split('"@@REASON@@"')
        conn.execute(
            f"UPDATE requests SET body = CAST(? || {reason_sql} || ? AS TEXT) WHERE request_id = ?",
            (before, *params, after, request_id),
        )


@pytest.mark.parametrize(
    ("reason_sql", "params", "shown"),
    [
        # JSON escapes of control characters and a lone surrogate: valid JSON, odd text
        ("?", (json.dumps(ODD + " \udcff"),), "\\xff"),
        # raw bytes that are not UTF-8, raw control characters inside the JSON string
        ("CAST(? AS BLOB)", (b'"caf\xe9 \x1b[31mred\x07 tab\there"',), "caf\\xe9"),
    ],
    ids=["json-escapes", "raw-bytes"],
)
def test_list_and_status_survive_odd_stored_text(team, reason_sql, params, shown):
    request_id = pending(team)
    tamper(team, request_id, reason_sql, *params)
    for args in (("list",), ("list", "--pending"), ("status", request_id)):
        out = team.run(BOB, *args)
        assert out.returncode == 0, out.stderr
        text = out.stdout + out.stderr
        assert shown in text and "red" in text
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    (row,) = listed(team)
    assert row["request_id"] == request_id
    out = team.run(BOB, "status", request_id, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["request_id"] == request_id


def test_status_never_renders_markup_from_a_reason(team):
    request_id = pending(team)
    tamper(team, request_id, "?", json.dumps("[yellow] [link=https://evil.example]x[/link]"))
    out = team.run(BOB, "status", request_id)
    assert out.returncode == 0, out.stderr
    assert "[link=https://evil.example]x[/link]" in out.stdout  # shown as text, not a link


def test_pagerduty_url_with_invalid_utf8_in_the_environment_is_refused(team):
    env = team.env(BOB)
    env_bytes = {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in env.items()}
    env_bytes[b"JITCTL_PAGERDUTY_URL"] = b"https://pd\xff.example"
    refused(team.run(BOB, "list", env=env_bytes), "[pagerduty] url", "not valid UTF-8")


LONG = "a" * 5000  # longer than any file name the OS will look up (ENAMETOOLONG)


@pytest.mark.parametrize("variable", ["JITCTL_CONFIG", "JITCTL_POLICY"])
def test_a_path_too_long_to_look_up_is_exit_2(team, tmp_path, variable):
    env = team.env(ALICE, **{variable: str(tmp_path / LONG)})
    refused(
        team.run(ALICE, "request", "prod-readonly", "--reason", "x", env=env), "File name too long"
    )


def test_policy_validate_survives_a_path_too_long_to_look_up(team, tmp_path):
    out = team.run(BOB, "policy", "validate", str(tmp_path / LONG))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "File name too long" in out.stdout + out.stderr


def test_a_session_policy_path_too_long_to_look_up_is_a_policy_error(team):
    text = (team.policy_dir / "team.toml").read_text()
    (team.policy_dir / "team.toml").write_text(text.replace("readonly.json", LONG + ".json"))
    code, output = validate(team)
    assert code == 2 and "session_policy" in output and "File name too long" in output
