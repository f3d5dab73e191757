"""Signed central audit records (jitctl.audit.signing) and what a writer of the central copy
can and cannot get past `audit verify --remote`: moto's server for KMS, DynamoDB, S3 and IAM."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import boto3
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from jitctl.audit.central import verify_central
from jitctl.audit.log import read_records, record_hash
from jitctl.audit.s3 import S3Sink
from jitctl.audit.signing import Signer, Verifier, same_key
from jitctl.audit.trail import open_sinks
from jitctl.aws import AwsClients
from jitctl.config.settings import AuditSettings
from jitctl.errors import AuditError, ConfigError
from tests.test_audit_sink import Central, add, fill, trail, unique

BOB = "bob@example.com"


def new_key(spec: str = "ECC_NIST_P256", usage: str = "SIGN_VERIFY") -> str:
    kms = boto3.client("kms")
    key = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    alias = f"alias/{unique('key')}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return alias


@pytest.fixture
def key(aws_env) -> str:
    return new_key()


@pytest.fixture
def clients(aws_env) -> AwsClients:
    return AwsClients()


@pytest.fixture
def bucket(clients) -> S3Sink:
    name = unique("b")
    boto3.client("s3").create_bucket(Bucket=name)
    return S3Sink(name, "audit/", clients.client)


def settings(tmp_path, **kw) -> AuditSettings:
    return AuditSettings(path=tmp_path / "audit.jsonl", **kw)


@pytest.fixture
def signed(tmp_path, clients, key, request):
    """A table or a bucket whose sink signs with `key` (as open_sinks wires it)."""
    kind = request.param
    table = unique("t") if kind == "dynamodb" else None
    bucket = unique("b") if kind == "s3" else None
    if bucket:
        boto3.client("s3").create_bucket(Bucket=bucket)
    (sink,) = open_sinks(
        settings(tmp_path, table=table, bucket=bucket, prefix="audit/", kms_key=key),
        clients.client,
    )
    if table:
        sink._poll_interval = 0.01
    sink.init()
    return sink


both = pytest.mark.parametrize("signed", ["dynamodb", "s3"], indirect=True)


def verifier(key: str, clients) -> Verifier:
    return Verifier(key, clients.client)


def dump(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def test_a_signature_is_kms_ecdsa_over_the_record_hash(tmp_path, clients, key):
    record = add(trail(tmp_path, []), 1)
    signature = Signer(key, clients.client).sign(record)
    assert signature.key_id.startswith("arn:aws:kms:")
    # Checked with nothing of jitctl's: the key's public key, the 32 hash bytes, ECDSA/SHA-256.
    public = boto3.client("kms").get_public_key(KeyId=key)["PublicKey"]
    load_der_public_key(public).verify(
        base64.b64decode(signature.sig), bytes.fromhex(record["hash"]), ec.ECDSA(hashes.SHA256())
    )
    check = verifier(key, clients)
    assert check.problem(record, signature.sig, signature.key_id) is None
    assert same_key(check.key_arn, signature.key_id)
    edited = {**record, "reason": "edited"}
    edited["hash"] = record_hash(edited)
    assert "bad signature" in check.problem(edited, signature.sig, signature.key_id)
    assert "no signature" in check.problem(record, None, None)
    assert "not base64" in check.problem(record, "%%%", None)
    assert "bad signature" in check.problem(record, base64.b64encode(b"junk").decode(), None)


def test_the_same_record_is_signed_once_for_every_sink(tmp_path, clients, key):
    signer = Signer(key, clients.client)
    record = add(trail(tmp_path, []), 1)
    first = signer.sign(record)
    assert signer.sign(record) is first  # ECDSA is randomised: a second call would differ


def test_a_key_of_the_wrong_kind_is_a_config_error(aws_env, clients):
    for spec, usage in (("RSA_2048", "SIGN_VERIFY"), ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")):
        with pytest.raises(ConfigError, match="ECC_NIST_P256"):
            Verifier(new_key(spec, usage), clients.client).load()


@both
def test_signed_records_verify_and_carry_their_signature(tmp_path, signed, key, clients):
    log = trail(tmp_path, [signed])
    records = fill(log, 3)
    entries = list(signed.entries())
    assert all(e.sig and e.key_id.startswith("arn:aws:kms:") for e in entries)
    result = verify_central(entries, read_records(log.path), verifier=verifier(key, clients))
    assert (result.ok, result.records) == (True, 3)
    assert [json.loads(e.text) for e in entries] == records  # the record itself is unchanged


@both
def test_a_forged_chain_and_an_edit_fail_on_the_signature(tmp_path, signed, key, clients):
    """Issue 9 item 5: with only PutItem/PutObject, a requester adds a self-consistent chain
    attributed to bob, and rewrites her own newest record (rehashed)."""
    log = trail(tmp_path, [signed])
    records = fill(log, 3)
    chain = records[0]["chain"]
    check = verifier(key, clients)
    forger = trail(tmp_path / "forger", [])  # her own log: every hash and prev right
    fresh = [
        forger.append("approved", request_id=f"r-{n}", actor="x", person=BOB, role="prod-admin")
        for n in range(2)
    ]
    signed.signer = None  # she has no kms:Sign
    for record in fresh:
        signed.put(record)
    assert verify_central(signed.entries()).ok  # the chain alone cannot tell
    result = verify_central(signed.entries(), verifier=check)
    assert (result.ok, result.chain, result.seq) == (False, fresh[0]["chain"], 1)
    assert "no signature" in result.problem
    # The newest record of a real chain edited and rehashed; its old signature kept.
    edited = {**records[2], "event": "cancelled"}
    edited["hash"] = record_hash(edited)
    rewrite_keeping_signature(signed, chain, 3, dump(edited))
    entries = [e for e in signed.entries() if e.chain == chain]
    result = verify_central(entries, verifier=check)
    assert (result.ok, result.chain, result.seq) == (False, chain, 3)
    assert "bad signature" in result.problem


def rewrite_keeping_signature(sink, chain: str, seq: int, text: str) -> None:
    if not isinstance(sink, S3Sink):
        Central(sink).rewrite(chain, seq, text)  # UpdateItem leaves sig and key_id alone
        return
    s3 = boto3.client("s3")
    key = Central(sink)._key(chain, seq)
    meta = s3.head_object(Bucket=sink.bucket, Key=key)["Metadata"]
    s3.put_object(Bucket=sink.bucket, Key=key, Body=text.encode(), Metadata=meta)


def test_a_record_signed_by_another_key_fails(tmp_path, clients, key):
    """The forger signs with a key of her own and names it; only [audit] kms_key counts."""
    own = new_key()
    table = unique("t")
    (sink,) = open_sinks(settings(tmp_path, table=table, kms_key=own), clients.client)
    sink._poll_interval = 0.01
    sink.init()
    fill(trail(tmp_path, [sink]), 2)
    result = verify_central(sink.entries(), verifier=verifier(key, clients))
    assert not result.ok and result.seq == 1
    assert "bad signature (it names arn:aws:kms:" in result.problem


def test_signing_failure_is_a_sink_failure_and_blocks(tmp_path, clients):
    table = unique("t")
    missing = "alias/jitctl-no-such-key"
    (sink,) = open_sinks(settings(tmp_path, table=table, kms_key=missing), clients.client)
    sink._poll_interval = 0.01
    sink.init()
    log = trail(tmp_path, [sink])
    with pytest.raises(AuditError, match="central audit sink failed"):
        add(log, 1)
    events = read_records(log.path)
    assert [r["event"] for r in events] == ["requested", "audit_sink_failed"]
    assert "cannot sign" in events[1]["error"]
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == []  # nothing unsigned


# ------------------------------------------------------------------ several writers


def test_many_chains_verify_and_a_deleted_chain_is_noticed_by_its_writer(tmp_path, signed_table):
    sink, check = signed_table
    logs = [trail(tmp_path / f"writer-{n}", [sink]) for n in range(5)]
    for n, log in enumerate(logs):
        fill(log, n + 1)
    for log in logs:
        result = verify_central(sink.entries(), read_records(log.path), verifier=check)
        assert (result.ok, result.chains, result.records) == (True, 5, 15)
    victim = read_records(logs[2].path)
    for record in victim:
        Central(sink).delete(record["chain"], record["seq"])
    result = verify_central(sink.entries(), read_records(logs[2].path), verifier=check)
    assert (result.ok, result.chain, result.seq) == (False, victim[0]["chain"], 1)
    assert "in the local log but missing from the central copy" in result.problem
    # What cannot be noticed: the other writers' logs never held that chain.
    assert verify_central(sink.entries(), read_records(logs[0].path), verifier=check).ok


@pytest.fixture
def signed_table(tmp_path, clients, key):
    (sink,) = open_sinks(settings(tmp_path, table=unique("t"), kms_key=key), clients.client)
    sink._poll_interval = 0.01
    sink.init()
    return sink, verifier(key, clients)


# ------------------------------------------------------------------ S3 Object Lock


@pytest.fixture
def locked(tmp_path, clients) -> S3Sink:
    name = unique("lock")
    boto3.client("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    sink = S3Sink(name, "audit/", clients.client, retention=("COMPLIANCE", 30))
    sink.init()
    return sink


def test_object_lock_retains_every_record(tmp_path, locked):
    records = fill(trail(tmp_path, [locked]), 2)
    s3 = boto3.client("s3")
    key = locked.key(records[0])
    head = s3.head_object(Bucket=locked.bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = datetime.fromisoformat(records[0]["ts"].replace("Z", "+00:00")) + timedelta(days=30)
    assert abs(head["ObjectLockRetainUntilDate"] - until) < timedelta(seconds=1)
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=locked.bucket, Key=key, VersionId=head["VersionId"])
    assert locked.object_lock() == (True, None, None)


def test_an_overwrite_under_object_lock_is_reported_and_the_original_kept(tmp_path, locked):
    log = trail(tmp_path, [locked])
    records = fill(log, 3)
    rewritten = {**records[1], "event": "cancelled"}
    rewritten["hash"] = record_hash(rewritten)
    key = locked.key(records[1])
    boto3.client("s3").put_object(Bucket=locked.bucket, Key=key, Body=dump(rewritten).encode())
    result = verify_central(locked.entries(), read_records(log.path), sink=locked.name)
    assert (result.ok, result.chain, result.seq) == (False, records[0]["chain"], 2)
    assert "overwritten: 2 versions" in result.problem
    versions = boto3.client("s3").list_object_versions(Bucket=locked.bucket, Prefix=key)
    (oldest,) = [v for v in versions["Versions"] if not v["IsLatest"]]
    assert f"version {oldest['VersionId']}, is the original" in result.problem
    body = boto3.client("s3").get_object(
        Bucket=locked.bucket, Key=key, VersionId=oldest["VersionId"]
    )
    assert json.loads(body["Body"].read()) == records[1]


def test_a_chain_deleted_under_object_lock_is_reported(tmp_path, locked):
    """Issue 9 item 5: she deletes her whole chain (and her local log): in a locked bucket a
    DeleteObject only adds a delete marker, and verify names it for anyone."""
    records = fill(trail(tmp_path, [locked]), 2)
    s3 = boto3.client("s3")
    for record in records:
        s3.delete_object(Bucket=locked.bucket, Key=locked.key(record))
    assert "Contents" not in s3.list_objects_v2(Bucket=locked.bucket)  # it looks gone
    result = verify_central(locked.entries())  # no local log to compare with
    assert (result.ok, result.chain, result.seq) == (False, records[0]["chain"], 1)
    assert "deleted: a delete marker hides it" in result.problem


def test_retention_needs_a_bucket_with_object_lock(tmp_path, clients):
    name = unique("nolock")
    boto3.client("s3").create_bucket(Bucket=name)
    sink = S3Sink(name, "audit/", clients.client, retention=("GOVERNANCE", 7))
    assert sink.object_lock() == (False, None, None)
    with pytest.raises(ConfigError, match="no Object Lock"):
        sink.init()


def test_a_record_moved_to_another_day_is_reported(tmp_path, bucket):
    """Moving a record under an older day's key would hide it from `audit log --since`."""
    records = fill(trail(tmp_path, [bucket]), 2)
    s3 = boto3.client("s3")
    key = bucket.key(records[1])
    moved = key.replace(records[1]["ts"][:4], "2001", 1)
    s3.copy_object(
        Bucket=bucket.bucket, Key=moved, CopySource={"Bucket": bucket.bucket, "Key": key}
    )
    s3.delete_object(Bucket=bucket.bucket, Key=key)
    result = verify_central(bucket.entries())
    assert (result.ok, result.seq) == (False, 2)
    assert "stored under 2001/" in result.problem and "moved" in result.problem


# ------------------------------------------------------------------ who can write (doctor's probes)


def keys_of(user: str, actions: list[str]) -> dict[str, str]:
    """An IAM user in moto allowed `actions` on everything (none: no policy at all)."""
    iam = boto3.client("iam")
    iam.create_user(UserName=user)
    if actions:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }


def factory_for(keys: dict[str, str]):
    return lambda service: boto3.client(service, **keys)


def test_probes_tell_who_may_write_without_writing(tmp_path, clients, key, signed_table):
    from moto.core import set_initial_no_auth_action_count

    table, _ = signed_table
    bucket = unique("b")
    boto3.client("s3").create_bucket(Bucket=bucket)
    writer = factory_for(
        keys_of(unique("writer"), ["dynamodb:PutItem", "s3:PutObject", "kms:Sign"])
    )
    reader = factory_for(keys_of(unique("reader"), []))

    @set_initial_no_auth_action_count(0)  # moto checks every call against IAM from here on
    def probe(factory) -> tuple[bool, bool, bool]:
        sinks = open_sinks(
            settings(tmp_path, table=table.table, bucket=bucket, prefix="audit/"), factory
        )
        return (*(s.writable() for s in sinks), Signer(key, factory).can_sign())

    assert probe(writer) == (True, True, True)
    assert probe(reader) == (False, False, False)
    # Nothing was written by either probe.
    assert boto3.client("dynamodb").scan(TableName=table.table)["Items"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=bucket)


# ------------------------------------------------------------------ [audit] settings


def audit_config(tmp_path, body: str) -> AuditSettings:
    from jitctl.config.settings import load_config

    path = tmp_path / "config.toml"
    path.write_text('[audit]\ntable = "t"\nbucket = "b"\n' + body)
    return load_config({"JITCTL_CONFIG": str(path)}).audit


def test_audit_settings_for_signing_and_retention(tmp_path):
    plain = audit_config(tmp_path, "")
    assert (plain.kms_key, plain.retention_days, plain.retention_mode) == (
        None,
        None,
        "COMPLIANCE",
    )
    full = audit_config(
        tmp_path, 'kms_key = "alias/a"\nretention_days = 400\nretention_mode = "GOVERNANCE"\n'
    )
    assert (full.kms_key, full.retention_days, full.retention_mode) == (
        "alias/a",
        400,
        "GOVERNANCE",
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ("retention_days = 0", "retention_days must be a whole number"),
        ("retention_days = 1.5", "retention_days must be a whole number"),
        ('retention_days = "30"', "retention_days must be a whole number"),
        ("retention_days = true", "retention_days must be a whole number"),
        ("retention_days = 99999999999999999999", "retention_days must be a whole number"),
        ('retention_mode = "compliance"', "retention_mode must be one of"),
        ('kms_key = ""', "kms_key must be a non-empty string"),
    ],
)
def test_bad_audit_settings_are_one_line_config_errors(tmp_path, body, words):
    with pytest.raises(ConfigError, match=words) as info:
        audit_config(tmp_path, body + "\n")
    assert int(info.value.exit_code) == 2 and "\n" not in info.value.message


# ------------------------------------------------------------------ what a server returns


def test_verify_report_is_one_json_verdict(tmp_path, aws_env, key):
    """What the broker returns for `audit verify --remote`: a JSON document, not an exception."""
    from jitctl.audit.verify import verify_report
    from jitctl.context import Environment

    table = unique("t")
    config = tmp_path / "config.toml"
    config.write_text(f'[audit]\npath = "audit.jsonl"\ntable = "{table}"\nkms_key = "{key}"\n')
    env = Environment(environ={**aws_env, "JITCTL_CONFIG": str(config)})
    (sink,) = env.audit.sinks
    sink._poll_interval = 0.01
    sink.init()
    fill(env.audit, 3)
    doc = verify_report(env, remote=True)
    assert json.loads(json.dumps(doc)) == doc
    assert (doc["ok"], doc["failure"], doc["signed"]) == (True, None, True)
    assert doc["remote"][0]["records"] == 3
    forged = add(trail(tmp_path / "forger", []), 9)
    sink.signer = None
    sink.put(forged)
    doc = verify_report(env, remote=True)
    assert doc["ok"] is False
    assert doc["failure"].startswith(f"dynamodb:{table}: chain {forged['chain']} seq 1: ")
    assert "no signature" in doc["failure"]
