"""The identity rule (CONTRACT "Who the caller is") at its edges: ARNs that only look like the
ones it maps, and [identities] keys that differ from the real ARN only in case.

AWS names principals in ASCII; an ARN with other digits or letters is not one AWS issues, so it
names nobody (the rule fails closed rather than guessing). [identities] maps exact ARNs: a key
that differs in case is another principal (session names are case-sensitive and chosen by the
caller). The last test shows the same through the CLI, with moto naming the caller.
"""

from __future__ import annotations

import pytest

from jitctl.errors import ExitCode, IdentityError
from jitctl.identity.rule import IdentityRules, parse_principal, person_for, resolve_caller

ACCOUNT = "123456789012"


def _never_asked(role_arn: str):
    raise AssertionError(f"IAM asked about {role_arn}: the ARN alone must have been refused")


def _resolve(arn: str, rules):
    """The identity rule on an ARN it must refuse before asking IAM anything."""
    return resolve_caller(arn, ACCOUNT, rules, user_id="", roles=_never_asked)


@pytest.mark.parametrize(
    "arn",
    [
        # Arabic-Indic digits: \d without re.ASCII would take them for an account id
        "arn:aws:iam::\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662"
        ":user/alice@example.com",
        # a user path with a non-ASCII letter: \w without re.ASCII would accept it
        "arn:aws:iam::123456789012:user/d\u00e9v/alice@example.com",
        # an Identity Center role whose name is not ASCII: not AWS's own role
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Adm\u00efn_1/alice@example.com",
        # a session name with a non-ASCII letter before the email
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_1/\u00e5lice@example.com",
    ],
)
def test_an_arn_that_aws_would_not_issue_names_nobody(arn):
    assert person_for(arn, {}) is None
    with pytest.raises(IdentityError) as info:
        _resolve(arn, {})
    assert info.value.exit_code == ExitCode.USAGE


def test_the_same_arns_in_ascii_name_their_person():
    """The refusals above are about the characters alone."""
    for arn in (
        "arn:aws:iam::123456789012:user/alice@example.com",
        "arn:aws:iam::123456789012:user/dev/alice@example.com",
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_1/alice@example.com",
    ):
        assert person_for(arn, {}) == "alice@example.com", arn


def test_identities_keys_are_exact_arns_case_and_all():
    session = "arn:aws:sts::123456789012:assumed-role/ops/Alice"
    rules = IdentityRules(mapping={session: "Alice@Example.com"})
    assert person_for(session, rules) == "alice@example.com"
    for other in (
        "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "arn:aws:sts::123456789012:assumed-role/OPS/Alice",
        "ARN:AWS:STS::123456789012:ASSUMED-ROLE/OPS/ALICE",
    ):
        assert person_for(other, rules) is None, other
        with pytest.raises(IdentityError):
            _resolve(other, rules)


CASE_POLICY = """
version = 1

[identities]
"arn:aws:iam::123456789012:user/CI-Bot" = "ci-bot@example.com"

[roles.prod-readonly]
arn = "arn:aws:iam::123456789012:role/prod-readonly"
max_duration = "1h"

[roles.prod-readonly.approval]
approvers = ["carol@example.com"]
"""


@pytest.fixture
def team_policy() -> str:
    return CASE_POLICY


def test_the_cli_does_not_map_a_key_that_differs_in_case(team):
    """moto names the caller arn:...:user/ci-bot; the policy maps user/CI-Bot: nobody."""
    out = team.run("ci-bot", "whoami")
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert "cannot tell which person arn:aws:iam::123456789012:user/ci-bot is" in out.stderr
    assert "Traceback" not in out.stderr
    fixed = team.policy_dir / "team.toml"
    fixed.write_text(fixed.read_text().replace("user/CI-Bot", "user/ci-bot"))
    out = team.run("ci-bot", "whoami")
    assert out.returncode == 0, out.stderr
    assert "ci-bot@example.com" in out.stdout + out.stderr


def test_only_an_assumed_role_session_can_have_trusted_session_names():
    """An IAM user has no session name: no rule (not even a pattern matching everything)
    makes its name a session name to trust."""
    rules = IdentityRules(session_name_roles=("*",))
    user = parse_principal("arn:aws:iam::123456789012:user/AWSReservedSSO_x/alice@example.com")
    assert user is not None and user.role_name is None
    assert rules.trusts_session_names(user) is False
    session = parse_principal("arn:aws:sts::123456789012:assumed-role/ops/alice@example.com")
    assert session is not None and rules.trusts_session_names(session) is True
