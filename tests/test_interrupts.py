"""Ctrl-C: exit 130 means the pending request this run made is cancelled, wherever the
interrupt lands, in both modes and with both stores; the cancel is the one cancel path
(the same audit reason, the approvers' page resolved).

The interrupt is a real SIGINT, raised by a hook at the exact point under test
(``signal.raise_signal`` delivers it before it returns): no sleeps, no timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jitctl import models
from jitctl.broker.client import BrokerService
from jitctl.cli import request_cmd
from jitctl.cli.main import run
from jitctl.context import Environment
from jitctl.lifecycle.interrupts import INTERRUPTED_WHY
from jitctl.store.dynamodb import DynamoStore
from jitctl.store.sqlite import SqliteStore
from tests import incident_world
from tests.incident_world import ALICE, PAGE_SERVICE, act_as

role_uid, team_policy = incident_world.role_uid, incident_world.team_policy

STORES = (SqliteStore, DynamoStore)
WORLD_ACCOUNT = "666677778888"  # moto's state is per process: a world of its own


def interrupt(*_: Any, **__: Any) -> None:
    """A Ctrl-C, now: SIGINT to this thread, handled before this call returns."""
    signal.raise_signal(signal.SIGINT)


def then_interrupt(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, then a Ctrl-C: its work is done, its answer not yet handed back."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        interrupt()
        return result

    return wrapped


def interrupt_then(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Ctrl-C, then ``fn``: pressed again while the run is cancelling."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        interrupt()
        return fn(*args, **kwargs)

    return wrapped


def run_cli(argv: list[str], env: Environment, capsys: Any) -> tuple[int, str]:
    try:
        code = run(argv, env)
    except KeyboardInterrupt:  # escaping would stop pytest itself
        pytest.fail("a Ctrl-C escaped the CLI's handler")
    return code, capsys.readouterr().err


def pages_of(pd: Any, request_id: str) -> list[dict[str, Any]]:
    return [inc for inc in pd.incidents.incidents.values() if inc["key"] == request_id]


# ------------------------------------------------------------------ direct mode


team = incident_world.team


@pytest.fixture(params=["sqlite", "dynamodb"])
def paged(request, team):
    """incident_world's team (role db-paged pages PSVCAPPROVE), with either store."""
    if request.param == "dynamodb":
        team.use_store(f'[store]\nbackend = "dynamodb"\ntable = "jitctl-{uuid.uuid4().hex[:8]}"\n')
        assert team.run(ALICE, "init").returncode == 0
    return team


def mine(monkeypatch: Any, team: Any) -> list[models.AccessRequest]:
    env = act_as(monkeypatch, team, ALICE)
    return env.service.list(pending_only=False, mine=True, role=None, limit=10)


def check_cancelled(
    monkeypatch: Any, team: Any, code: int, err: str, *, paged: bool = True
) -> None:
    """Exit 130, the request cancelled through the one path: the page resolved (``paged``:
    one was opened; else none was left open), and the requester's audit trail says why."""
    [req] = mine(monkeypatch, team)
    assert code == 130, err
    assert f"interrupted: request {req.request_id} cancelled" in err, err
    assert req.status == models.CANCELLED and "Traceback" not in err
    records = [r for r in team.audit_records(ALICE) if r.get("request_id") == req.request_id]
    [cancelled] = [r for r in records if r["event"] == "cancelled"]
    assert cancelled["why"] == INTERRUPTED_WHY
    pages = pages_of(team.pd, req.request_id)
    assert [p["status"] for p in pages] == (["resolved"] if paged else [])
    assert ("page_resolved" in [r["event"] for r in records]) == paged


def request_paged(monkeypatch: Any, team: Any, capsys: Any) -> tuple[int, str]:
    env = act_as(monkeypatch, team, ALICE)
    return run_cli(["request", "db-paged", "--reason", "INC-60 replica lag"], env, capsys)


def test_ctrl_c_between_recording_and_waiting_cancels(paged, monkeypatch, capsys):
    monkeypatch.setattr(request_cmd, "announce_pending", interrupt)
    check_cancelled(monkeypatch, paged, *request_paged(monkeypatch, paged, capsys))


def test_ctrl_c_while_the_store_write_is_answering_cancels(paged, monkeypatch, capsys):
    """The write has landed, its answer is not back: the request exists though `create` has
    not returned. The Ctrl-C waits for it, then cancels."""
    for store in STORES:
        monkeypatch.setattr(store, "create", then_interrupt(store.create))
    code, err = request_paged(monkeypatch, paged, capsys)
    check_cancelled(monkeypatch, paged, code, err, paged=False)  # stopped before paging


def test_ctrl_c_while_the_page_is_opening_resolves_it(paged, monkeypatch, capsys):
    """PagerDuty has opened the page; the request does not yet know it: the Ctrl-C waits
    until it does, so the cancel resolves the page."""
    from jitctl.oncall import incidents

    monkeypatch.setattr(incidents, "open_page", then_interrupt(incidents.open_page))
    check_cancelled(monkeypatch, paged, *request_paged(monkeypatch, paged, capsys))


def test_ctrl_c_while_waiting_cancels(paged, monkeypatch, capsys):
    from jitctl.lifecycle import waiting

    monkeypatch.setattr(waiting, "_check_timeout", interrupt)
    check_cancelled(monkeypatch, paged, *request_paged(monkeypatch, paged, capsys))


def test_a_second_ctrl_c_does_not_stop_the_cancel(paged, monkeypatch, capsys):
    monkeypatch.setattr(request_cmd, "announce_pending", interrupt)
    for store in STORES:
        monkeypatch.setattr(store, "cancel", interrupt_then(store.cancel))
    check_cancelled(monkeypatch, paged, *request_paged(monkeypatch, paged, capsys))


def test_a_request_approved_meanwhile_is_left_approved(paged, monkeypatch, capsys):
    """Interrupted while the approved request is being issued: nothing pending to cancel."""
    from jitctl.lifecycle import flow, waiting

    def approve(request_id: str, *_: Any) -> None:
        out = paged.run("bob@example.com", "approve", request_id, "--yes")
        assert out.returncode == 0, out.stderr

    monkeypatch.setattr(waiting, "_check_timeout", approve)
    monkeypatch.setattr(flow, "issue", interrupt)
    code, err = request_paged(monkeypatch, paged, capsys)
    [req] = mine(monkeypatch, paged)
    assert code == 130 and f"request {req.request_id} was not cancelled" in err, err
    assert req.status == models.APPROVED


def test_a_cancel_that_fails_says_so_with_its_own_exit_code(paged, monkeypatch, capsys):
    from jitctl.errors import AwsUnavailable

    def down(*_: Any, **__: Any) -> None:
        raise AwsUnavailable("the store is unreachable")

    monkeypatch.setattr(request_cmd, "announce_pending", interrupt)
    for store in STORES:
        monkeypatch.setattr(store, "cancel", down)
    code, err = request_paged(monkeypatch, paged, capsys)
    [req] = mine(monkeypatch, paged)
    assert code == 5, err
    assert f"interrupted, but request {req.request_id} could not be cancelled" in err
    assert f"jitctl cancel {req.request_id}" in err and req.status == models.PENDING


def test_ctrl_c_in_jitctl_wait_leaves_the_request_pending(paged, monkeypatch, capsys):
    """`jitctl wait` did not make the request: it stops waiting and says how to resume."""
    from jitctl.lifecycle import waiting

    out = paged.run(ALICE, "request", "db-paged", "--reason", "INC-61", "--no-wait")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    monkeypatch.setattr(waiting, "_check_timeout", interrupt)
    code, err = run_cli(["wait", request_id], act_as(monkeypatch, paged, ALICE), capsys)
    assert code == 130 and f"jitctl wait {request_id}" in err, err
    [req] = mine(monkeypatch, paged)
    assert req.status == models.PENDING
    assert [p["status"] for p in pages_of(paged.pd, request_id)] == ["triggered"]


def test_a_real_sigint_after_the_request_is_announced(paged, monkeypatch):
    """The installed CLI, a real SIGINT sent once its stderr shows the request recorded."""
    waiter = paged.popen(ALICE, "request", "db-paged", "--reason", "INC-62")
    check_cancelled(monkeypatch, paged, *sigint_once_announced(waiter))


def sigint_once_announced(waiter: subprocess.Popen[str]) -> tuple[int, str]:
    assert waiter.stderr is not None
    seen = waiter.stderr.readline()
    while seen and "approval needed" not in seen:
        seen += waiter.stderr.readline()
    waiter.send_signal(signal.SIGINT)
    _, rest = waiter.communicate(timeout=60)
    return waiter.returncode, seen + rest


# ------------------------------------------------------------------ broker mode

BROKER_PAGES = f'request_ttl = "30m"\npage_service = "{PAGE_SERVICE}"\n'


@pytest.fixture(scope="module")
def world(tmp_path_factory, pd_certs) -> Iterator[Any]:
    """A broker whose prod-readonly approvals page PSVCAPPROVE."""
    from tests.broker_world import ACCOUNT, POLICY, own_world

    policy = POLICY.replace(ACCOUNT, WORLD_ACCOUNT).replace('request_ttl = "30m"\n', BROKER_PAGES)
    root = tmp_path_factory.mktemp("broker")
    with own_world(root, pd_certs, account=WORLD_ACCOUNT, policy=policy) as w:
        w.pd.add_service(PAGE_SERVICE, "PEP9")
        with w.serving():
            yield w


def client(world: Any, monkeypatch: Any, person: str = ALICE) -> Environment:
    """An in-process client of the broker (boto3 reads the process environment)."""
    return world.act_as(monkeypatch, person)


def around(monkeypatch: Any, method: str, suffix: str, hook: Callable[..., Any]) -> None:
    """``hook`` wrapped round the client's calls of ``method`` on a path ending ``suffix``."""
    send = BrokerService._send

    def wrapped(self: BrokerService, how: str, path: str, *args: Any) -> Any:
        if how == method and path.split("?")[0].endswith(suffix):
            return hook(send)(self, how, path, *args)
        return send(self, how, path, *args)

    monkeypatch.setattr(BrokerService, "_send", wrapped)


def broker_check(world: Any, monkeypatch: Any, code: int, err: str) -> None:
    """As check_cancelled, with the broker's own trail."""
    env = client(world, monkeypatch)
    req = env.service.list(pending_only=False, mine=True, role=None, limit=1)[0]  # the newest
    assert code == 130, err
    assert f"interrupted: request {req.request_id} cancelled" in err, err
    assert req.status == models.CANCELLED and "Traceback" not in err
    assert [p["status"] for p in pages_of(world.pd, req.request_id)] == ["resolved"]
    log = world.broker_dir / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [r for r in records if r.get("request_id") == req.request_id]
    [cancelled] = [r for r in ours if r["event"] == "cancelled"]
    assert cancelled["why"] == INTERRUPTED_WHY and cancelled["person"] == ALICE
    assert "page_resolved" in [r["event"] for r in ours]


def broker_request(world: Any, monkeypatch: Any, capsys: Any) -> tuple[int, str]:
    env = client(world, monkeypatch)
    return run_cli(["request", "prod-readonly", "--reason", "INC-70 lag"], env, capsys)


@pytest.mark.slow
def test_broker_ctrl_c_between_recording_and_waiting_cancels(world, enforcing, monkeypatch, capsys):
    monkeypatch.setattr(request_cmd, "announce_pending", interrupt)
    broker_check(world, monkeypatch, *broker_request(world, monkeypatch, capsys))


@pytest.mark.slow
def test_broker_ctrl_c_before_the_brokers_answer_cancels(world, enforcing, monkeypatch, capsys):
    """The broker has recorded the request; its answer (the id) is not yet read."""
    around(monkeypatch, "POST", "/requests", then_interrupt)
    broker_check(world, monkeypatch, *broker_request(world, monkeypatch, capsys))


@pytest.mark.slow
def test_broker_ctrl_c_while_waiting_cancels(world, enforcing, monkeypatch, capsys):
    around(monkeypatch, "GET", "/wait", then_interrupt)
    broker_check(world, monkeypatch, *broker_request(world, monkeypatch, capsys))


@pytest.mark.slow
def test_broker_second_ctrl_c_does_not_stop_the_cancel(world, enforcing, monkeypatch, capsys):
    monkeypatch.setattr(request_cmd, "announce_pending", interrupt)
    around(monkeypatch, "POST", "/cancel", interrupt_then)
    broker_check(world, monkeypatch, *broker_request(world, monkeypatch, capsys))


@pytest.mark.slow
def test_broker_a_real_sigint_after_the_request_is_announced(world, enforcing, monkeypatch):
    waiter = world.popen(ALICE, "request", "prod-readonly", "--reason", "INC-71")
    broker_check(world, monkeypatch, *sigint_once_announced(waiter))


@pytest.mark.slow
def test_broker_cancel_takes_only_a_boolean_interrupted(world, enforcing, monkeypatch, capsys):
    from jitctl.errors import UsageError

    env = client(world, monkeypatch)
    code, _ = run_cli(["request", "prod-readonly", "--reason", "INC-72", "--no-wait"], env, capsys)
    assert code == 0
    req = env.service.list(pending_only=True, mine=True, role=None, limit=1)[0]
    path = f"/requests/{req.request_id}/cancel"
    with pytest.raises(UsageError, match="interrupted must be true or false"):
        env.service._call("POST", path, {"interrupted": "yes"})
    assert env.service.get(req.request_id).status == models.PENDING
    assert env.service.cancel(req.request_id).status == models.CANCELLED
    log = world.broker_dir / "audit.jsonl"
    [cancelled] = [
        r
        for r in map(json.loads, log.read_text().splitlines())
        if r.get("request_id") == req.request_id and r["event"] == "cancelled"
    ]
    assert cancelled["why"] == "cancelled by the requester"
