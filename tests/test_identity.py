import pytest

from jitctl.errors import ExitCode, IdentityError
from jitctl.identity import person_for, resolve_caller


@pytest.mark.parametrize(
    ("arn", "person"),
    [
        ("arn:aws:iam::123456789012:user/Alice@Example.com", "alice@example.com"),
        ("arn:aws:iam::123456789012:user/eng/bob@example.com", "bob@example.com"),
        (
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/carol@example.com",
            "carol@example.com",
        ),
        ("arn:aws-us-gov:iam::123456789012:user/dave@example.com", "dave@example.com"),
    ],
)
def test_email_principals_map_to_a_person(arn, person):
    assert person_for(arn, {}) == person


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/ci-bot",
        "arn:aws:sts::123456789012:assumed-role/deploy/i-0abc",
        "arn:aws:iam::123456789012:role/alice@example.com",  # a role, not a session
        "arn:aws:iam::123456789012:root",
        "not-an-arn",
    ],
)
def test_unmappable_principals(arn):
    assert person_for(arn, {}) is None


def test_identities_table_wins():
    arn = "arn:aws:iam::123456789012:user/mallory@example.com"
    assert person_for(arn, {arn: "Alice@Example.com"}) == "alice@example.com"


def test_unmapped_caller_is_a_usage_error_that_says_how_to_map():
    arn = "arn:aws:iam::123456789012:user/ci-bot"
    with pytest.raises(IdentityError) as info:
        resolve_caller(arn, "123456789012", {})
    assert info.value.exit_code == ExitCode.USAGE
    assert "[identities]" in str(info.value) and arn in str(info.value)
