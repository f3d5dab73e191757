"""A broker client asks AWS nothing: its time comes from the broker's answer (``Date``).

The client's one contact with AWS is signing its proof (which the broker, not the client,
sends to STS). Its trusted clock learns the time from the broker's ``Date`` header, which the
broker writes from its own trusted clock; the broker still decides by its own clock alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from jitctl.cli.main import run
from jitctl.context import Environment
from jitctl.trusted_time import TrustedClock
from jitctl.wiring import choose_service
from tests.broker_world import POLICY, BrokerWorld, own_world
from tests.conftest import FixedClock
from tests.test_exit_codes import Listener
from tests.world import export

pytestmark = pytest.mark.slow

ACCOUNT = "777700005555"  # a world of its own: moto's state is shared by the whole process
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[BrokerWorld]:
    policy = POLICY.replace("444455556666", ACCOUNT)
    root = tmp_path_factory.mktemp("clock")
    with own_world(root, pd_certs, account=ACCOUNT, policy=policy) as w, w.serving():
        yield w


@pytest.fixture(autouse=True)
def _enforced(enforcing) -> None:
    """moto's IAM enforcement on (conftest.enforcing): Alice's keys may do nothing in AWS."""


def test_a_broker_client_takes_its_time_from_the_broker_and_asks_aws_nothing(
    world, monkeypatch, capsys
):
    """Alice's local clock runs three hours fast and her AWS endpoint counts every connection:
    request and status work (the broker accepts only a proof dated within minutes of its own
    clock), nothing reaches her endpoint, and status shows times from the broker's clock."""
    world.on_call(ALICE)
    now = datetime.now(UTC)
    aws = Listener(reply=b"")  # any STS call of the client's own would connect here
    environ = world.client_env(ALICE, AWS_ENDPOINT_URL=aws.url)
    export(monkeypatch, environ)
    told: list[str] = []
    clock = TrustedClock(FixedClock(now + timedelta(hours=3)))
    first = Environment(
        service_factory=choose_service, environ=environ, clock=clock, on_clock_skew=told.append
    )
    assert abs(first.clock.now() - datetime.now(UTC)) < timedelta(minutes=1)  # the broker's

    def act(*argv: str) -> str:
        env = Environment(
            service_factory=choose_service, environ=environ, clock=clock, on_clock_skew=told.append
        )
        code = run(list(argv), env)
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    doc = json.loads(act("request", "prod-readonly", "--reason", "INC-77", "--json"))
    assert doc["status"] == "issued"
    shown = act("status", doc["request_id"])
    assert aws.accepted == 0
    assert len(told) == 1 and "ahead of AWS's" in told[0]
    rows = dict(line.split(None, 1) for line in shown.strip().splitlines())
    # seconds ago, not three hours: the broker's Date has a 1 s resolution, so a request made
    # within that second may read "in 0s" or "in 1s"
    assert re.search(r"\((\d+s ago|in [01]s)\)$", rows["created"]), rows
    assert rows["credentials"].endswith("(in 1h)"), rows  # and not expired


def test_the_broker_dates_its_answers_by_its_own_trusted_clock(world, monkeypatch):
    """What clients learn their time from is the broker's trusted clock (here a fixed clock
    standing for AWS's time, an hour from the host's), not the host's."""
    from email.utils import parsedate_to_datetime

    from jitctl.broker.build import build_broker
    from jitctl.broker.handler import HttpRequest

    environ = world.broker_env()
    export(monkeypatch, environ)
    aws_time = FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    broker = build_broker(Environment(environ=environ, clock=aws_time))
    for path in ("/v1/info", "/v1/whoami"):  # answered, and refused (no proof)
        answer = broker.handle(HttpRequest("GET", path, {}, b""))
        assert parsedate_to_datetime(answer.headers["date"]) == aws_time.now(), path
