"""The on-call request builds its PagerDuty client on a thread while AWS names the caller.

Real parts: moto's server and the PagerDuty simulator. The only stand-ins are our own
interfaces: the keyring lookup ``Environment.keyring_get`` and a session's token provider.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from jitctl import models
from jitctl.aws import AwsClients
from jitctl.config.settings import PagerDutySettings
from jitctl.context import Environment
from jitctl.errors import TokenError
from jitctl.lifecycle.flow import submit
from jitctl.oncall.client import LookupFailed
from jitctl.oncall.session import PagerDutySession
from tests.test_flow import ALICE


def test_the_pagerduty_client_is_built_once_off_the_command_thread(team, monkeypatch):
    team.on_call(ALICE)
    team.act_as(monkeypatch, ALICE)
    monkeypatch.delenv("JITCTL_PAGERDUTY_TOKEN", raising=False)
    environ = {k: v for k, v in team.env(ALICE).items() if k != "JITCTL_PAGERDUTY_TOKEN"}
    reads: list[str] = []

    def keyring_get(service: str, user: str) -> str:  # the token from "the OS keyring"
        reads.append(threading.current_thread().name)
        return team.pd.token

    env = Environment(environ=environ, keyring_get=keyring_get)
    try:
        done = submit(env, role_name="prod-readonly", reason="INC-1", duration=None)
        reader = env.pagerduty.reader
    finally:
        env.close()
    assert done.request.status == models.APPROVED and done.request.approval == models.ON_CALL
    assert reads == ["jitctl-pagerduty"]  # read once, on the thread that built the reader
    assert reader is not None


def settings(pd_sim, timeout: float = 10.0) -> PagerDutySettings:
    return PagerDutySettings(url=pd_sim.url, ca_bundle=pd_sim.ca_bundle, timeout=timeout)


def test_a_lookup_that_comes_first_waits_for_the_client_being_built(pd_sim):
    entered, release, calls = threading.Event(), threading.Event(), []

    def token() -> tuple[str, str]:
        calls.append(1)
        entered.set()
        assert release.wait(30)
        return pd_sim.token, "env"

    session = PagerDutySession(settings(pd_sim), token)
    warming = threading.Thread(target=session.warm)
    warming.start()
    assert entered.wait(30)
    got: list[object] = []
    looking = threading.Thread(target=lambda: got.append(session.reader))
    looking.start()
    # The lookup reaches the client being built and blocks there (the builder holds it until
    # released), rather than building its own or returning without one.
    assert blocked_in(looking, "_built"), "the lookup never reached the client being built"
    assert looking.is_alive() and got == [] and calls == [1]
    release.set()
    warming.join(30)
    looking.join(30)
    try:
        assert calls == [1] and got == [session.reader]
    finally:
        session.close()


def blocked_in(thread: threading.Thread, function: str, timeout: float = 30) -> bool:
    """Whether ``thread`` reaches a frame of ``function`` within ``timeout`` (its stack is
    read, not timed): no sleep decides the outcome, only where the thread is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        frame = sys._current_frames().get(thread.ident or 0)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        thread.join(0.01)
    return False


def test_the_lookup_deadline_starts_at_the_first_lookup_not_when_warmed(pd_sim):
    session = PagerDutySession(settings(pd_sim, timeout=7), lambda: (pd_sim.token, "env"))
    try:
        session.warm()
        assert session._reader is not None and session._reader.deadline is None
        before = time.monotonic()
        reader = session.reader
        assert before + 7 <= reader.deadline <= time.monotonic() + 7
        first = reader.deadline
        assert session.reader.deadline == first  # one deadline for every lookup
        assert session.client.deadline == first  # the official client's too (incidents)
    finally:
        session.close()


def test_a_failed_warm_up_fails_closed_on_the_command_thread(pd_sim):
    calls = []

    def no_token() -> tuple[str, str]:
        calls.append(threading.current_thread().name)
        raise TokenError("no PagerDuty token", "export JITCTL_PAGERDUTY_TOKEN=...")

    session = PagerDutySession(settings(pd_sim), no_token)
    thread = threading.Thread(target=session.warm, name="warm")
    thread.start()
    thread.join(30)
    with pytest.raises(LookupFailed, match="no PagerDuty token"):  # the fast track fails closed
        _ = session.reader
    assert calls == ["warm", threading.current_thread().name]


def test_two_threads_asking_for_one_aws_client_get_the_same_one(aws_env):
    clients, got = AwsClients(), []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait(30)
        got.append(clients.client("sts"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(got) == 4 and all(client is got[0] for client in got)


def test_in_background_runs_elsewhere_and_hands_back_the_result_or_the_error():
    from jitctl.lifecycle.background import in_background

    where = in_background(lambda: threading.current_thread().name)
    assert where() == "jitctl-lookup"

    def boom() -> None:
        raise TokenError("no PagerDuty token")

    waiting = in_background(boom)
    with pytest.raises(TokenError, match="no PagerDuty token"):
        waiting()
