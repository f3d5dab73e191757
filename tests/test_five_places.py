"""One contract, two modes: every operation is written in five places, and they must agree.

``AccessService`` (the protocol the CLI calls), ``LocalService`` (direct mode, and the broker's
side), ``BrokerService`` (the client in broker mode), the broker handler's ``_ROUTES`` (an
endpoint per operation) and ``broker/wire.py`` (how each answer crosses). These tests fail when
an operation is missing from any of them, when their signatures disagree, when the client's
call lands on an endpoint that runs a different operation, or when an answer is encoded on one
side with no decoder on the other.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jitctl.broker import handler, wire
from jitctl.broker.client import BrokerService
from jitctl.lifecycle.contract import AccessService
from jitctl.lifecycle.service import LocalService

# Public methods a side may have beyond the contract: the client's view of the broker itself.
TRANSPORT = {BrokerService: {"info"}}


def operations(cls: type) -> set[str]:
    return {
        name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")
    } - TRANSPORT.get(cls, set())


CONTRACT = sorted(operations(AccessService))


def test_the_contract_is_what_it_seems() -> None:
    """Guards the test itself: the protocol is read, not an empty set."""
    assert {"request", "wait", "issue", "revoke", "approve", "cancel"} <= set(CONTRACT)
    assert len(CONTRACT) >= 20


@pytest.mark.parametrize("cls", [LocalService, BrokerService], ids=lambda c: c.__name__)
def test_both_services_implement_exactly_the_contract(cls: type) -> None:
    missing = set(CONTRACT) - operations(cls)
    extra = operations(cls) - set(CONTRACT)
    assert not missing, f"{cls.__name__} lacks {sorted(missing)} (AccessService has them)"
    assert not extra, f"{cls.__name__} has {sorted(extra)}, which AccessService lacks"


def _shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, str]]:
    """Parameters (name, kind, default, annotation) and the return annotation, as written
    (``builtins.list`` and ``list`` are the same type)."""
    sig = inspect.signature(fn)

    def text(annotation: Any) -> str:
        return str(annotation).replace("builtins.", "")

    params = [(p.name, p.kind, p.default, text(p.annotation)) for p in sig.parameters.values()]
    return [*params, ("return", None, None, text(sig.return_annotation))]


@pytest.mark.parametrize("name", CONTRACT)
@pytest.mark.parametrize("cls", [LocalService, BrokerService], ids=lambda c: c.__name__)
def test_signatures_agree_with_the_protocol(cls: type, name: str) -> None:
    want = _shape(getattr(AccessService, name))
    got = _shape(getattr(cls, name))
    assert got == want, f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))} differs"


# ---- the client's call lands on the endpoint that runs the same operation


class _Sent(Exception):
    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method, path


def _sample(param: inspect.Parameter) -> Any:
    """An argument of the parameter's type, enough to build the call the client sends."""
    annotation = str(param.annotation)
    if "timedelta" in annotation:
        return timedelta(seconds=30)
    if annotation == "bool":
        return False
    if "Callable" in annotation or "PollCallback" in annotation:
        return None
    if annotation == "int":
        return 10
    return "r-abc123" if "request_id" in param.name else "prod-readonly"


def _sent(name: str, monkeypatch: pytest.MonkeyPatch) -> _Sent:
    """The (method, path) BrokerService sends for operation ``name``; nothing leaves."""

    def call(self: BrokerService, method: str, path: str, body: Any = None) -> Any:
        raise _Sent(method, wire.API + path.split("?")[0])

    monkeypatch.setattr(BrokerService, "_call", call)
    client = object.__new__(BrokerService)  # no Environment: the call stops at _call
    fn = getattr(client, name)
    args = {
        p.name: _sample(p)
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
    }
    with pytest.raises(_Sent) as sent:
        fn(**args)
    return sent.value


def _calls(fn: Callable[..., Any], receiver: str) -> set[str]:
    """Names called as ``receiver.NAME(...)`` or used as ``receiver.NAME`` in ``fn``'s body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == receiver
    }


@pytest.mark.parametrize("name", CONTRACT)
def test_each_operation_has_an_endpoint_that_runs_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sent(name, monkeypatch)
    try:
        action, _ = handler._route(sent.method, sent.path)
    except Exception as exc:  # 404/405: no route for what the client sends
        pytest.fail(f"BrokerService.{name} sends {sent.method} {sent.path}: no route ({exc})")
    ran = _calls(action, "service") & set(CONTRACT)
    assert name in ran, (
        f"BrokerService.{name} sends {sent.method} {sent.path}, whose endpoint "
        f"{action.__name__} runs {sorted(ran)}"
    )


def test_every_route_is_some_operation_s_endpoint() -> None:
    """No endpoint without an operation: a route whose action runs no service method is
    a place nobody maintains."""
    for method, pattern, action in handler._ROUTES:
        assert _calls(action, "service") & set(CONTRACT), f"{method} {pattern.pattern}"


# ---- what one side encodes, the other decodes


@pytest.mark.parametrize("name", CONTRACT)
def test_each_answer_has_its_encoder_and_decoder(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sent(name, monkeypatch)
    action, _ = handler._route(sent.method, sent.path)
    encoded = {n.removesuffix("_out") for n in _calls(action, "wire") if n.endswith("_out")}
    parts = {n.removesuffix("_out") for n in dir(wire) if n.endswith("_out")}
    used = _calls(getattr(BrokerService, name), "wire")
    decoded = {n.removesuffix("_in") for n in used} & parts
    for part in encoded | decoded:
        assert callable(getattr(wire, f"{part}_out", None)), f"wire.{part}_out is missing"
        assert callable(getattr(wire, f"{part}_in", None)), f"wire.{part}_in is missing"
    assert encoded == decoded, (
        f"{name}: the endpoint {action.__name__} encodes {sorted(encoded)} and "
        f"BrokerService.{name} decodes {sorted(decoded)}"
    )
