"""The broker's `GET /v1/audit` a page at a time (jitctl.audit.read.page_after, cursor): the
pages, followed by their cursors, hold every record once, in order, and a page reads no
further than one record past its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jitctl.audit.read import cursor, page_after
from jitctl.audit.sink import sort_key
from jitctl.errors import ExitCode, UsageError


def records() -> list[dict[str, Any]]:
    """Twelve records, three chains writing at the same seconds (ties on ts)."""
    found = [
        {"ts": f"2026-11-21T04:00:0{second}Z", "chain": chain, "seq": second + 1}
        for second in range(4)
        for chain in ("c-a", "c-b", "c-c")
    ]
    return sorted(found, key=sort_key)


def resumed_from(after: tuple[str, str, int] | None) -> Iterator[dict[str, Any]]:
    """What the broker's next query yields: from the cursor's second on (its since)."""
    return (r for r in records() if after is None or r["ts"] >= after[0])


@pytest.mark.parametrize("limit", [1, 2, 5, 12, 50])
def test_pages_followed_hold_every_record_once_in_order(limit):
    got, text, pages = [], None, 0
    while True:
        page, text = page_after(resumed_from(cursor(text)), cursor(text), limit)
        got += page
        pages += 1
        assert len(page) <= limit
        if text is None:
            break
    assert got == records()
    assert pages == max(1, -(-len(records()) // limit))


def test_a_page_reads_one_record_past_its_end_and_no_further():
    read = []

    def counted() -> Iterator[dict[str, Any]]:
        for record in records():
            read.append(record)
            yield record

    page, text = page_after(counted(), None, 4)
    assert page == records()[:4] and len(read) == 5
    assert json.loads(text or "") == list(sort_key(records()[3]))


@pytest.mark.parametrize(
    "text", ["nonsense", '["a", "b"]', '["a", "b", "1"]', "[1, 2, 3]", '["a", "b", true]', "{}"]
)
def test_a_cursor_the_broker_never_gave_out_is_refused(text):
    with pytest.raises(UsageError) as refused:
        cursor(text)
    assert refused.value.exit_code == ExitCode.USAGE


class _Broker:
    """The broker's `GET /v1/audit` over ``records()``, page by page as the handler answers
    (page_after, cursor), or all at once as a broker before paging did (``paged=False``)."""

    def __init__(self, paged: bool, page: int = 5) -> None:
        self.paged, self.page, self.calls = paged, page, []

    def __call__(self, method: str, path: str) -> dict[str, Any]:
        from urllib.parse import parse_qsl, urlsplit

        self.calls.append(path)
        q = dict(parse_qsl(urlsplit(path).query))
        if not self.paged:
            return {"records": records()}
        after = cursor(q.get("after"))
        found, more = page_after(resumed_from(after), after, min(int(q["limit"]), self.page))
        return {"records": found, **({"next": more} if more else {})}


@pytest.mark.parametrize("paged", [True, False])
def test_the_client_follows_the_pages_and_reads_an_older_brokers_one_answer(paged):
    from jitctl.broker.client import BrokerService

    client = BrokerService.__new__(BrokerService)  # only its paging: no proof, no network
    broker = _Broker(paged)
    client._call = broker  # type: ignore[method-assign]
    got = list(client.audit_records(since=None, request_id="r-1", person=None, local=False))
    assert got == records()
    assert len(broker.calls) == (3 if paged else 1)
    assert all("request=r-1" in path and "limit=" in path for path in broker.calls)
