"""identity_center roles and [identity_center] in the config: what is accepted, and one line
that says what is wrong for everything else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jitctl.config.settings import load_config
from jitctl.errors import ConfigError, ExitCode
from jitctl.policy.load import load_policy
from tests.test_policy import error_of, write

ROLE = """
version = 1

[roles.sso]
{body}

[roles.sso.approval]
approvers = ["bob@example.com"]
"""
GOOD = 'kind = "identity_center"\npermission_set = "ProdAdmin"\naccount = "111122223333"'


def policy(tmp_path, body: str):
    return write(tmp_path / "p.toml", ROLE.format(body=body))


def test_identity_center_role_loads_with_its_account_and_a_one_minute_floor(tmp_path):
    role = load_policy(policy(tmp_path, GOOD + '\nmax_duration = "1m"')).role("sso")
    assert (role.kind, role.permission_set, role.account) == (
        "identity_center",
        "ProdAdmin",
        "111122223333",
    )
    assert role.max_duration == timedelta(minutes=1) and role.arn == ""


def test_assume_role_keeps_its_sts_floor_and_gets_its_account_from_the_arn(tmp_path):
    body = 'arn = "arn:aws:iam::444455556666:role/app"'
    role = load_policy(policy(tmp_path, body)).role("sso")
    assert (role.kind, role.account) == ("assume_role", "444455556666")
    assert "between 15m" in error_of(policy(tmp_path, body + '\nmax_duration = "1m"'))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('kind = "sso"\narn = "arn:aws:iam::111122223333:role/a"', "kind 'sso' is not one of"),
        ('kind = "identity_center"\naccount = "111122223333"', "permission_set is required"),
        ('kind = "identity_center"\npermission_set = "P"', "account is required"),
        (GOOD.replace('"111122223333"', "111122223333"), "must be a non-empty string"),
        (GOOD.replace("111122223333", "1111"), "not a 12-digit AWS account id"),
        (GOOD.replace("ProdAdmin", "Prod Admin!"), "neither a permission set name"),
        (GOOD + '\narn = "arn:aws:iam::111122223333:role/a"', "arn does not apply"),
        (GOOD + '\nmax_duration = "30s"', "between 1m and 12h"),
        ('arn = "arn:aws:iam::111122223333:role/a"\naccount = "111122223333"', "only for kind"),
    ],
)
def test_identity_center_mistakes_are_one_line(tmp_path, body, says):
    assert says in error_of(policy(tmp_path, body))


def config(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config({"JITCTL_CONFIG": str(path)})


def test_identity_center_config_is_read_and_checked(tmp_path):
    good = config(
        tmp_path,
        '[identity_center]\ninstance_arn = "arn:aws:sso:::instance/ssoins-1234567890abcdef"\n'
        'identity_store_id = "d-1234567890"\nregion = "eu-west-1"\ntimeout = "30s"\n',
    ).identity_center
    assert (good.identity_store_id, good.region, good.timeout) == ("d-1234567890", "eu-west-1", 30)
    for bad, says in [
        ('instance_arn = "ssoins-1"', "not an Identity Center instance ARN"),
        ('identity_store_id = "x y"', "not an Identity Store id"),
        ('timeout = "1h"', "timeout must be between"),
        ('instance = "x"', "instance"),
    ]:
        with pytest.raises(ConfigError) as info:
            config(tmp_path, f"[identity_center]\n{bad}\n")
        assert says in str(info.value) and info.value.exit_code == ExitCode.USAGE
