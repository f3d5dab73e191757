"""`list` and `status` show what is true of a grant now (issue 10 item 7): a grant cut off by a
later revocation of the same person and role, or one whose credentials expired, must not read
as live. Derived when read: the store is not written."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.cli.main import run
from jitctl.context import Environment
from tests.conftest import FixedClock
from tests.harness import Team, own_role_team
from tests.world import stored_request

ALICE = "alice@example.com"
NOW = datetime.now(UTC).replace(microsecond=0)


def put_grant(env: Environment, *, issued_ago: int, lasts: int = 60) -> str:
    """A grant issued to Alice ``issued_ago`` minutes before NOW, straight into the store."""
    at, lasting = NOW - timedelta(minutes=issued_ago), timedelta(minutes=lasts)
    return stored_request(
        env, ALICE, at=at, reason="INC-7", duration_seconds=lasts * 60, issued_for=lasting
    )


@pytest.fixture
def world(tmp_path, moto_server, pd_sim, monkeypatch):
    """Alice's four grants: expired, cut off by a later revocation, that revocation, live."""
    team = Team(tmp_path, moto_server, pd_sim)
    env = team.act_as(monkeypatch, ALICE, FixedClock(NOW))
    monkeypatch.setenv("COLUMNS", "200")  # a table row on one line
    ids = {
        "expired": put_grant(env, issued_ago=90),
        "cut": put_grant(env, issued_ago=20),
        "revoked": put_grant(env, issued_ago=15),
        "live": put_grant(env, issued_ago=2),
    }
    at = NOW - timedelta(minutes=5)
    env.store.mark_revoked(ids["revoked"], ALICE, now=at, reason="done")
    return team, ids


def cli(team: Team, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(environ=team.env(ALICE), clock=FixedClock(NOW), stdout=out, stderr=err)
    code = run(list(argv), env=env)
    return code, out.getvalue(), err.getvalue()


def test_list_json_says_which_grants_are_dead_and_why(world):
    team, ids = world
    code, out, err = cli(team, "list", "--json")
    assert code == 0, err
    rows = {r["request_id"]: r for r in json.loads(out)}
    assert rows[ids["live"]]["grant_state"] == "live"
    assert rows[ids["live"]]["grant_ended_at"] is None
    assert rows[ids["expired"]]["grant_state"] == "expired"
    assert rows[ids["cut"]]["grant_state"] == "cut_off"
    assert rows[ids["cut"]]["cut_off_by"] == ids["revoked"]
    assert rows[ids["cut"]]["grant_ended_at"] == rows[ids["revoked"]]["revoked_at"]
    assert rows[ids["revoked"]]["grant_state"] == "revoked"
    # the stored status is what it was: readers write nothing
    assert {rows[i]["status"] for i in (ids["live"], ids["expired"], ids["cut"])} == {"issued"}


def test_list_table_has_an_expiry_column_that_tells_the_truth(world, capsys):
    team, ids = world
    code, out, err = cli(team, "list")
    printed = out + capsys.readouterr().out
    assert code == 0, err
    assert "EXPIRES" in printed
    lines = {
        rid: next(line for line in printed.splitlines() if rid in line) for rid in ids.values()
    }
    assert "issued (expired)" in lines[ids["expired"]] and "ended 30m ago" in lines[ids["expired"]]
    assert "issued (cut off)" in lines[ids["cut"]] and ids["revoked"] in lines[ids["cut"]]
    assert "revoked 5m ago" in lines[ids["revoked"]]
    assert "issued " in lines[ids["live"]] and "in 58m" in lines[ids["live"]]
    assert "in 40m" not in lines[ids["cut"]]  # its credentials' own expiry is not the truth


@pytest.mark.parametrize("which", ["expired", "cut"])
def test_status_of_a_dead_grant_does_not_say_it_expires_later(world, which):
    team, ids = world
    code, shown, err = cli(team, "status", ids[which])
    assert code == 0, err
    creds = next(line for line in shown.splitlines() if "credentials" in line)
    assert "expire " not in creds and "(in " not in creds
    if which == "cut":
        assert "cut off" in creds and ids["revoked"] in creds
        assert "issued (cut off)" in shown
    else:
        assert "expired" in creds and "30m ago" in creds


def test_status_json_of_the_cut_off_grant(world):
    team, ids = world
    code, out, err = cli(team, "status", ids["cut"], "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "issued" and doc["grant_state"] == "cut_off"
    assert doc["cut_off_by"] == ids["revoked"]


def test_status_of_a_live_grant_still_says_when_it_expires(world):
    team, ids = world
    code, shown, err = cli(team, "status", ids["live"])
    assert code == 0, err
    assert "expire" in shown and "in 58m" in shown and "cut off" not in shown


def test_through_the_cli_a_grant_cut_off_by_a_later_revocation_reads_cut_off(
    tmp_path, moto_server, pd_sim
):
    """Two on-call grants; revoking the second cuts the first off in AWS, and `list` and
    `status` (the installed CLI, as Alice) say so."""
    team = own_role_team(tmp_path, moto_server, pd_sim, "dead")
    team.on_call(ALICE, 3)
    first, second = (
        json.loads(
            team.run(ALICE, "request", "prod-readonly", "--reason", r, "--fresh", "--json").stdout
        )["request_id"]
        for r in ("INC-8 first", "INC-8 second")
    )
    done = team.run(ALICE, "revoke", second, "--reason", "done")
    assert done.returncode == 0, done.stderr
    rows = {r["request_id"]: r for r in json.loads(team.run(ALICE, "list", "--json").stdout)}
    assert rows[first]["status"] == "issued" and rows[first]["grant_state"] == "cut_off"
    assert rows[first]["cut_off_by"] == second
    table = team.run(ALICE, "list")
    line = next(x for x in table.stdout.splitlines() if first in x)
    assert "issued (cut off)" in line and second in line
    shown = team.run(ALICE, "status", first)
    assert shown.returncode == 0, shown.stderr
    assert "cut off" in shown.stdout and "expire " not in shown.stdout
