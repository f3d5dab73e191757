import pytest

from jitctl.errors import ExitCode, IdentityError
from jitctl.identity import IdentityRules, is_email, parse_principal, person_for, resolve_caller

SSO_SESSION = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/carol@example.com"
DEPLOY_SESSION = "arn:aws:sts::123456789012:assumed-role/deploy/bob@example.com"
DEPLOY_ROLE = "arn:aws:iam::123456789012:role/deploy"


@pytest.mark.parametrize(
    ("arn", "person"),
    [
        ("arn:aws:iam::123456789012:user/Alice@Example.com", "alice@example.com"),
        ("arn:aws:iam::123456789012:user/eng/bob@example.com", "bob@example.com"),
        ("arn:aws:iam::123456789012:user/eng/team-a/bob@example.com", "bob@example.com"),
        (SSO_SESSION, "carol@example.com"),
        ("arn:aws-us-gov:iam::123456789012:user/dave@example.com", "dave@example.com"),
        ("arn:aws-cn:iam::123456789012:user/erin@example.co.uk", "erin@example.co.uk"),
        ("arn:aws:iam::123456789012:user/first.last+jit@example.com", "first.last+jit@example.com"),
    ],
)
def test_email_principals_map_to_a_person(arn, person):
    assert person_for(arn, IdentityRules()) == person


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/ci-bot",
        "arn:aws:sts::123456789012:assumed-role/deploy/i-0abc",
        # a session name is whatever the caller passed to AssumeRole: it names nobody
        DEPLOY_SESSION,
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSOAdmin/bob@example.com",
        "arn:aws:iam::123456789012:role/alice@example.com",  # a role, not a session
        "arn:aws:sts::123456789012:federated-user/bob@example.com",  # caller-chosen too
        "arn:aws:iam::123456789012:root",
        "arn:aws:iam::123456789012:user/a@b..c",  # not an email
        "arn:aws:iam::123456789012:user/.a@b.c",
        "arn:aws:iam::123456789012:user/a@b",
        "arn:aws:iam::123456789012:user/a@-b.c",
        "arn:aws:iam::12345:user/alice@example.com",  # 5-digit account
        "arn:aws:iam::1234567890123:user/alice@example.com",  # 13 digits
        "arn:aws-evil:iam::123456789012:user/alice@example.com",  # no such partition
        "arn:aws:sts::123456789012:user/alice@example.com",  # users live in iam, not sts
        "arn:aws:iam::123456789012:assumed-role/AWSReservedSSO_A/alice@example.com",
        "arn:aws:iam::123456789012:user/alice@example.com/",
        "arn:aws:iam::123456789012:user/alice@example.com\n",
        "not-an-arn",
        "",
    ],
)
def test_unmappable_principals(arn):
    assert person_for(arn, IdentityRules()) is None


def test_identities_table_wins():
    arn = "arn:aws:iam::123456789012:user/mallory@example.com"
    assert person_for(arn, IdentityRules({arn: "Alice@Example.com"})) == "alice@example.com"
    assert person_for(DEPLOY_SESSION, {DEPLOY_SESSION: "dave@example.com"}) == "dave@example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        DEPLOY_ROLE,
        "arn:aws:iam::123456789012:role/dep*",
        "arn:aws:iam::123456789012:role/[cd]eploy",
    ],
)
def test_session_name_roles_trust_a_listed_role(pattern):
    rules = IdentityRules(session_name_roles=(pattern,))
    assert person_for(DEPLOY_SESSION, rules) == "bob@example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        "arn:aws:iam::123456789012:role/deploy-prod",
        "arn:aws:iam::210987654321:role/deploy",  # another account
        "arn:aws-cn:iam::123456789012:role/deploy",  # another partition
        "arn:aws:iam::123456789012:role/Deploy",  # role names match case-sensitively here
    ],
)
def test_session_name_roles_do_not_trust_other_roles(pattern):
    assert person_for(DEPLOY_SESSION, IdentityRules(session_name_roles=(pattern,))) is None


def test_a_listed_role_still_needs_an_email_session_name():
    rules = IdentityRules(session_name_roles=(DEPLOY_ROLE,))
    assert person_for("arn:aws:sts::123456789012:assumed-role/deploy/a@b..c", rules) is None
    assert person_for("arn:aws:sts::123456789012:assumed-role/deploy/i-0abc", rules) is None


def test_a_bare_mapping_trusts_only_identity_center_sessions():
    assert person_for(SSO_SESSION, {}) == "carol@example.com"
    assert person_for(DEPLOY_SESSION, {}) is None


def test_parse_principal_drops_the_user_path_and_names_the_role():
    user = parse_principal("arn:aws:iam::123456789012:user/eng/bob@example.com")
    assert user is not None and user.user_name == "bob@example.com" and user.role_arn is None
    session = parse_principal(DEPLOY_SESSION)
    assert session is not None and session.role_arn == DEPLOY_ROLE
    assert session.session_name == "bob@example.com"


@pytest.mark.parametrize(
    ("text", "ok"),
    [("a@b.c", True), ("a.b@c.d.e", True), ("a@b..c", False), ("a..b@c.d", False)],
)
def test_is_email(text, ok):
    assert is_email(text) is ok


def test_unmapped_caller_is_a_usage_error_that_says_how_to_map():
    arn = "arn:aws:iam::123456789012:user/ci-bot"
    with pytest.raises(IdentityError) as info:
        resolve_caller(arn, "123456789012", IdentityRules())
    assert info.value.exit_code == ExitCode.USAGE
    assert "[identities]" in str(info.value) and arn in str(info.value)


def test_a_spoofable_session_is_refused_with_both_ways_to_map_it():
    with pytest.raises(IdentityError) as info:
        resolve_caller(DEPLOY_SESSION, "123456789012", IdentityRules())
    message = str(info.value)
    assert info.value.exit_code == ExitCode.USAGE
    assert f'[identities] "{DEPLOY_SESSION}"' in message
    assert f'session_name_roles = ["{DEPLOY_ROLE}"]' in message
    assert "\n" not in message


def test_resolve_caller_maps_a_listed_role():
    rules = IdentityRules(session_name_roles=(DEPLOY_ROLE,))
    caller = resolve_caller(DEPLOY_SESSION, "123456789012", rules)
    assert (caller.person, caller.arn, caller.account) == (
        "bob@example.com",
        DEPLOY_SESSION,
        "123456789012",
    )


def test_a_trusted_session_without_an_email_is_told_to_map_the_arn_only():
    arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_abc/carol"
    with pytest.raises(IdentityError) as info:
        resolve_caller(arn, "123456789012", IdentityRules())
    assert f'[identities] "{arn}"' in str(info.value)
    assert "session_name_roles" not in str(info.value)
