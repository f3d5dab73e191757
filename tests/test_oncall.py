"""jitctl.oncall.session against the PagerDuty simulator, over real TLS trusting the test CA."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.config.settings import PagerDutySettings
from jitctl.errors import ConfigError, ExitCode, TokenError
from jitctl.oncall.client import get_token, make_client
from jitctl.oncall.reader import make_reader
from jitctl.oncall.session import check_on_call, find_user
from jitctl.timeutil import rfc3339
from tests.pdsim import ACCOUNT_LEVEL_ME, PagerDutySim

H = timedelta(hours=1)


@dataclass(frozen=True)
class Rule:  # duck-typed like jitctl.policy.OnCallRule
    escalation_policies: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    max_escalation_level: int | None = None


EP1 = Rule(escalation_policies=("PEP1",), max_escalation_level=1)


def check(
    sim: PagerDutySim,
    email: str,
    rule: Rule = EP1,
    *,
    timeout: float = 10.0,
    token: str | None = None,
    trust: bool = True,
):
    settings = PagerDutySettings(
        url=sim.url, ca_bundle=sim.ca_bundle if trust else None, timeout=timeout
    )
    with make_reader(settings, token or sim.token) as reader:
        return check_on_call(reader, email, rule, datetime.now(UTC))


def timed(fn, *args, **kw):
    started = time.monotonic()
    result = fn(*args, **kw)
    return result, time.monotonic() - started


# -- who is on call -------------------------------------------------------------------------
def test_on_call_at_level_1(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, now - H, now + 7 * H)
    result = check(pd_sim, "Alice@Example.com")
    assert result.on_call
    end = (now + 7 * H).replace(microsecond=0)
    assert result.reason == f"on call: escalation policy PEP1 level 1 until {rfc3339(end)}"
    ev = result.evidence
    assert (ev.matched_kind, ev.matched_id, ev.escalation_policy_id) == (
        "escalation_policy",
        "PEP1",
        "PEP1",
    )
    assert (ev.level, ev.pd_user_id, ev.schedule_id, ev.end) == (1, uid, None, end)
    oncalls = pd_sim.requests("/oncalls")
    assert len(oncalls) == 1 and oncalls[0].query["user_ids[]"] == [uid]
    assert oncalls[0].query["since"] == oncalls[0].query["until"]


def test_level_above_the_maximum_is_not_on_call(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 2, now - H, now + H)
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call and result.evidence is None
    assert "level 2" in result.reason and "maximum escalation level 1" in result.reason
    assert check(pd_sim, "alice@example.com", Rule(escalation_policies=("PEP1",))).on_call


def test_on_call_for_another_escalation_policy_does_not_count(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP9", 1, now - H, now + H)
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call
    assert "not for this role" in result.reason


def test_on_call_via_a_schedule(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP7", 1, now - H, now + H, schedule_id="PSCH1")
    result = check(pd_sim, "alice@example.com", Rule(schedules=("PSCH1",)))
    assert result.on_call
    ev = result.evidence
    assert (ev.matched_kind, ev.matched_id, ev.escalation_policy_id, ev.schedule_id) == (
        "schedule",
        "PSCH1",
        "PEP7",
        "PSCH1",
    )
    assert result.reason.startswith("on call: schedule PSCH1 (escalation policy PEP7) level 1")


def test_on_call_via_a_service(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_service("PSVC1", "PEP5")
    pd_sim.add_service("PSVC2", "PEP6")
    pd_sim.add_oncall(uid, "PEP5", 1, now - H, now + H)
    result = check(pd_sim, "alice@example.com", Rule(services=("PSVC2", "PSVC1")))
    assert result.on_call
    ev = result.evidence
    assert (ev.matched_kind, ev.matched_id, ev.escalation_policy_id) == ("service", "PSVC1", "PEP5")
    assert len(pd_sim.requests("/services/PSVC1")) == 1


def test_unknown_service_fails_closed(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP5", 1, now - H, now + H)
    result = check(pd_sim, "alice@example.com", Rule(services=("PNOPE",)))
    assert not result.on_call and "PNOPE" in result.reason and "404" in result.reason


@pytest.mark.parametrize(
    ("start", "end"),
    [(-8 * H, -H), (24 * H, 32 * H)],
    ids=["shift-ended", "starts-tomorrow"],
)
def test_shift_not_covering_now(pd_sim, start, end):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, now + start, now + end)
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call
    assert result.reason == "alice@example.com is not on call in PagerDuty now"


def test_permanent_on_call(pd_sim):
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, None, None)
    result = check(pd_sim, "alice@example.com")
    assert result.on_call
    assert (result.evidence.start, result.evidence.end) == (None, None)
    assert result.reason == "on call: escalation policy PEP1 level 1 (permanent)"


def test_prefers_the_shift_that_ends_latest(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, now - H, now + 2 * H)
    pd_sim.add_oncall(uid, "PEP2", 1, now - H, now + 6 * H)
    pd_sim.add_oncall(uid, "PEP3", 1, now - H, now + 4 * H)
    rule = Rule(escalation_policies=("PEP1", "PEP2", "PEP3"))
    assert check(pd_sim, "alice@example.com", rule).evidence.escalation_policy_id == "PEP2"
    pd_sim.add_oncall(uid, "PEP3", 1, None, None)
    assert check(pd_sim, "alice@example.com", rule).evidence.end is None


def test_email_that_is_a_substring_of_an_on_call_users_email(pd_sim):
    now = datetime.now(UTC)
    malice = pd_sim.add_user("malice@example.com")  # listed first: the first substring hit
    alice = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(malice, "PEP1", 1, now - H, now + H)
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call
    assert pd_sim.requests("/oncalls")[0].query["user_ids[]"] == [alice]
    assert check(pd_sim, "malice@example.com").on_call


def test_more_on_calls_than_one_page(pd_sim):
    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    for i in range(230):
        pd_sim.add_oncall(uid, f"POTHER{i}", 1, now - H, now + H)
    pd_sim.add_oncall(uid, "PEP1", 1, now - H, now + H)  # on the third page
    result = check(pd_sim, "alice@example.com")
    assert result.on_call, result.reason
    pages = pd_sim.requests("/oncalls")
    assert [p.query["offset"] for p in pages] == [["0"], ["100"], ["200"]]


def test_find_user_reads_every_page_of_users(pd_sim):
    for i in range(120):
        pd_sim.add_user(f"bob{i}.bob@example.com")
    uid = pd_sim.add_user("bob@example.com")  # a substring of none, found on page 2
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle)
    with make_reader(settings, pd_sim.token) as reader:
        assert find_user(reader, "BOB@example.com")["id"] == uid
    assert len(pd_sim.requests("/users")) == 2


def test_user_not_found(pd_sim):
    pd_sim.add_user("alice@example.com")
    result = check(pd_sim, "carol@example.com")
    assert not result.on_call
    assert result.reason == "no PagerDuty user has the email carol@example.com"
    assert pd_sim.requests("/oncalls") == []


def test_rule_without_ids_is_not_on_call(pd_sim):
    assert not check(pd_sim, "alice@example.com", Rule()).on_call
    assert pd_sim.requests() == []


def test_user_level_token_works_and_users_me_follows_the_token_kind(pd_sim):
    import pagerduty

    now = datetime.now(UTC)
    uid = pd_sim.add_user("alice@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, now - H, now + H)
    user_token = pd_sim.add_token("alice-user-token", user_id=uid)
    assert check(pd_sim, "alice@example.com", token=user_token).on_call
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle)
    with make_client(settings, user_token) as client:
        assert client.rget("/users/me")["email"] == "alice@example.com"
    with make_client(settings, pd_sim.token) as client:
        with pytest.raises(pagerduty.HttpError) as info:
            client.rget("/users/me")
    assert info.value.response.status_code == 400
    assert info.value.response.json()["error"]["message"] == ACCOUNT_LEVEL_ME


# -- failures: all of them "not on call" --------------------------------------------------------
def seed_on_call(sim: PagerDutySim) -> None:
    now = datetime.now(UTC)
    sim.add_oncall(sim.add_user("alice@example.com"), "PEP1", 1, now - H, now + H)


def test_bad_token_401(pd_sim):
    seed_on_call(pd_sim)
    result = check(pd_sim, "alice@example.com", token="s3cret-wrong-token")
    assert not result.on_call
    assert result.reason == "PagerDuty rejected the token (401): check JITCTL_PAGERDUTY_TOKEN"
    assert len(pd_sim.requests()) == 1


def test_injected_401_and_403(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(401)
    assert "(401)" in check(pd_sim, "alice@example.com").reason
    pd_sim.fail_next(403, path="/oncalls")
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call and "(403)" in result.reason and "/oncalls" in result.reason


def test_429_with_a_short_reset_then_success(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(429, reset=0.5)
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=5)
    assert result.on_call, result.reason
    assert [r.status for r in pd_sim.requests("/users")] == [429, 200]
    assert elapsed >= 0.5


def test_429_with_a_reset_past_the_budget_fails_fast(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(429, reset=30)
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=2)
    assert not result.on_call
    assert "429" in result.reason and "30s" in result.reason
    assert elapsed < 1.0
    assert len(pd_sim.requests()) == 1


def test_429_forever_is_bounded(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(429, count=100, reset=0)
    result = check(pd_sim, "alice@example.com", timeout=5)
    assert not result.on_call and "429" in result.reason
    assert len(pd_sim.requests()) == 3


def test_500_is_retried_twice_then_fails_closed(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(500, count=100)
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call and "500" in result.reason
    assert [r.status for r in pd_sim.requests()] == [500, 500, 500]


def test_500_then_recovery(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(503, count=2, path="/oncalls")
    assert check(pd_sim, "alice@example.com").on_call
    assert [r.status for r in pd_sim.requests("/oncalls")] == [503, 503, 200]


@pytest.mark.parametrize("path", [None, "/oncalls"], ids=["first-request", "later-request"])
def test_hang_fails_closed_within_the_budget(pd_sim, path):
    seed_on_call(pd_sim)
    pd_sim.hang_next(5, path=path)
    result, elapsed = timed(check, pd_sim, "alice@example.com", timeout=1.5)
    assert not result.on_call
    assert result.reason == f"PagerDuty unreachable at {pd_sim.url}: timed out after 1.5s"
    assert elapsed < 1.5 + 0.75


def test_bad_json_fails_closed(pd_sim):
    seed_on_call(pd_sim)
    pd_sim.fail_next(200, body="<html>not json</html>", path="/oncalls")
    result = check(pd_sim, "alice@example.com")
    assert not result.on_call and "unexpected response" in result.reason


def test_untrusted_certificate_fails_closed(pd_sim):
    seed_on_call(pd_sim)
    result = check(pd_sim, "alice@example.com", trust=False)
    assert not result.on_call
    assert "TLS certificate is not trusted" in result.reason
    assert pd_sim.requests() == []


def test_unreachable_fails_closed(pd_sim):
    settings = PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle, timeout=3)
    pd_sim.stop()
    with make_reader(settings, "t") as reader:
        result, elapsed = timed(check_on_call, reader, "a@example.com", EP1, datetime.now(UTC))
    assert not result.on_call and result.reason.startswith("PagerDuty unreachable")
    assert elapsed < 3


@pytest.mark.parametrize("make", [make_client, make_reader], ids=["client", "reader"])
def test_make_client_rejects_bad_settings(tmp_path, make):
    with pytest.raises(ConfigError, match="https://"):
        make(PagerDutySettings(url="http://127.0.0.1:1"), "t")
    with pytest.raises(ConfigError, match="CA bundle"):
        make(PagerDutySettings(ca_bundle=tmp_path / "missing.pem"), "t")


# -- the token ---------------------------------------------------------------------------------
def test_token_from_env_wins():
    def keyring_get(service, user):
        raise AssertionError("keyring must not be read when the env has a token")

    assert get_token({"JITCTL_PAGERDUTY_TOKEN": " tok \n"}, keyring_get) == ("tok", "env")


def test_token_from_keyring():
    store = {("jitctl", "pagerduty"): "kr-token"}
    assert get_token({}, lambda s, u: store.get((s, u))) == ("kr-token", "keyring")
    assert get_token({"JITCTL_PAGERDUTY_TOKEN": ""}, lambda s, u: store.get((s, u)))[1] == "keyring"


def test_no_token_says_how_to_set_one():
    with pytest.raises(TokenError) as info:
        get_token({}, lambda s, u: None)
    assert info.value.exit_code == ExitCode.USAGE
    assert "export JITCTL_PAGERDUTY_TOKEN=" in info.value.hint
    assert "keyring set jitctl pagerduty" in info.value.hint


@pytest.mark.parametrize("error", ["NoKeyringError", "KeyringError", "RuntimeError"])
def test_no_keyring_backend_is_a_token_error(error):
    import keyring.errors

    exc_type = getattr(keyring.errors, error, None) or RuntimeError

    def keyring_get(service, user):
        raise exc_type("no backend")

    with pytest.raises(TokenError) as info:
        get_token({}, keyring_get)
    assert "no usable keyring backend" in info.value.message
    assert "JITCTL_PAGERDUTY_TOKEN" in info.value.hint


def test_importing_oncall_stays_light():
    code = (
        "import sys, jitctl.oncall.session; "
        "print(sorted(m for m in ('pagerduty', 'httpx2', 'keyring') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_call_sends_the_content_type_the_api_reference_requires(pd_sim):
    """Issue 21 item 23: PagerDuty's REST API v2 reference marks `Content-Type:
    application/json` required on every call; the library sends it only with a body."""
    now = datetime.now(UTC)
    uid = pd_sim.add_user("ct@example.com")
    pd_sim.add_oncall(uid, "PEP1", 1, now - H, now + H)
    assert check(pd_sim, "ct@example.com").on_call
    gets = [r for r in pd_sim.requests() if r.method == "GET"]
    assert {r.path for r in gets} >= {"/users", "/oncalls"}
    assert {r.content_type for r in gets} == {"application/json"}


def test_unreachable_pagerduty_names_the_url_it_tried(pd_sim):
    """Issue 21 item 18: "PagerDuty unreachable: ConnectError" did not say where."""
    settings = PagerDutySettings(url="https://127.0.0.1:9", ca_bundle=pd_sim.ca_bundle, timeout=2)
    with make_reader(settings, pd_sim.token) as reader:
        result = check_on_call(reader, "alice@example.com", EP1, datetime.now(UTC))
    assert not result.on_call
    assert result.reason.startswith("PagerDuty unreachable at https://127.0.0.1:9: "), result.reason
