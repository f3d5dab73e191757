"""IAM's records of a session's role (jitctl.identity.iam_roles) against moto's server: what is kept,
where, and what happens when IAM cannot be asked."""

from __future__ import annotations

import json
import socket
import uuid

import boto3
import pytest

from jitctl.errors import AwsUnavailable, ExitCode, IdentityError
from jitctl.identity.iam_roles import RoleFacts
from jitctl.identity.rule import SSO_ROLE_PATH, Principal, parse_principal

ACCOUNT = "123456789012"


def _iam(endpoint: str, **keys: str):
    keys = keys or {"aws_access_key_id": "AKIAADMIN", "aws_secret_access_key": "x"}
    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", **keys)


def _role(endpoint: str, path: str = SSO_ROLE_PATH) -> tuple[Principal, str]:
    """A new role in moto: the principal of one of its sessions, and the role's unique id."""
    name = f"AWSReservedSSO_Test_{uuid.uuid4().hex[:8]}"
    role = _iam(endpoint).create_role(RoleName=name, Path=path, AssumeRolePolicyDocument="{}")
    principal = parse_principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/bob@example.com")
    assert principal is not None
    return principal, role["Role"]["RoleId"]


def _facts(endpoint: str, path=None, account: str = ACCOUNT, **keys: str) -> RoleFacts:
    client = _iam(endpoint, **keys)
    return RoleFacts(lambda: client, lambda: account, asker="these keys", fix="FIX", path=path)


def _forget(endpoint: str, principal: Principal) -> None:
    _iam(endpoint).delete_role(RoleName=principal.role_name)


def test_a_record_is_kept_on_disk_under_the_role_and_its_unique_id(moto_server, tmp_path):
    principal, role_id = _role(moto_server)
    cache = tmp_path / "cache" / "iam-roles.json"
    record = _facts(moto_server, cache).lookup(principal, role_id)
    assert record is not None and (record.role_id, record.path) == (role_id, SSO_ROLE_PATH)
    assert cache.stat().st_mode & 0o777 == 0o600
    _forget(moto_server, principal)  # from now on, only what was kept can answer
    assert _facts(moto_server, cache).lookup(principal, role_id) == record  # another run
    assert _facts(moto_server, cache).lookup(principal, "AROAOTHERROLE0000001") is None
    assert _facts(moto_server).lookup(principal, role_id) is None  # no file: IAM is asked


def test_an_answer_for_another_unique_id_is_not_kept(moto_server, tmp_path):
    principal, role_id = _role(moto_server)
    cache = tmp_path / "iam-roles.json"
    record = _facts(moto_server, cache).lookup(principal, "AROAEARLIERROLE00001")
    assert record is not None and record.role_id == role_id  # IAM's answer, for the rule
    assert not cache.exists()


def test_a_copy_a_killed_writer_left_behind_is_removed_by_the_next_one(moto_server, tmp_path):
    """A run killed between writing its temp file and renaming it leaves a stray copy: the
    next run that keeps a record clears it (under the file's lock), so strays never pile up."""
    principal, role_id = _role(moto_server)
    cache = tmp_path / "iam-roles.json"
    stray = tmp_path / ".iam-roles.json.4242.0badc0de.tmp"
    stray.write_text("{}")
    assert _facts(moto_server, cache).lookup(principal, role_id) is not None
    assert not stray.exists()
    assert cache.exists()


@pytest.mark.parametrize("spoil", ["group-writable", "garbage", "wrong-shape"])
def test_a_file_that_is_not_trustworthy_or_not_ours_is_not_read(moto_server, tmp_path, spoil):
    principal, role_id = _role(moto_server)
    cache = tmp_path / "iam-roles.json"
    assert _facts(moto_server, cache).lookup(principal, role_id) is not None
    _forget(moto_server, principal)
    if spoil == "group-writable":
        cache.chmod(0o620)
    elif spoil == "garbage":
        cache.write_bytes(b"\xff{not json")
    else:
        key = f"{principal.role_arn} {role_id}"
        cache.write_text(json.dumps({"version": 1, "roles": {key: {"arn": 1}}}))
    assert _facts(moto_server, cache).lookup(principal, role_id) is None  # IAM: gone


def test_a_role_of_another_account_cannot_be_checked(moto_server):
    principal, role_id = _role(moto_server)
    with pytest.raises(IdentityError) as info:
        _facts(moto_server, account="210987654321").lookup(principal, role_id)
    assert info.value.exit_code == ExitCode.USAGE
    assert "these keys are in account 210987654321" in str(info.value)
    assert f'[identities] "arn:aws:sts::{ACCOUNT}:assumed-role/' in str(info.value)


def test_keys_that_may_not_call_get_role_are_exit_2_with_the_fix(moto_server, enforcing):
    from moto.core.authorization import disable_iam_authentication

    with disable_iam_authentication():
        principal, role_id = _role(moto_server)
        user = f"nobody-{uuid.uuid4().hex[:6]}"
        _iam(moto_server).create_user(UserName=user)
        key = _iam(moto_server).create_access_key(UserName=user)["AccessKey"]
    keys = {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }
    with pytest.raises(IdentityError) as info:
        _facts(moto_server, **keys).lookup(principal, role_id)
    assert info.value.exit_code == ExitCode.USAGE
    assert "these keys may not call iam:GetRole" in str(info.value) and "FIX" in str(info.value)


def test_iam_out_of_reach_is_exit_5(moto_server):
    principal, role_id = _role(moto_server)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(AwsUnavailable) as info:
        _facts(dead).lookup(principal, role_id)
    assert info.value.exit_code == ExitCode.UNAVAILABLE
    assert f"cannot check role {principal.role_name} with IAM" in str(info.value)
