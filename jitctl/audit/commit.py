"""Group commit: the threads of one process that append at once share one write and one fsync.

The first thread to arrive while no batch is being written becomes the leader: it takes
everything queued so far (its own item included), in arrival order, and hands the batch to
``flush``. Threads that arrive meanwhile queue; when the leader is done it wakes them, each
one whose item was in the batch returns that item's result (or raises the batch's error),
and the first one still queued leads the next batch. So a caller returns only after the
batch holding its item was flushed, and a batch never waits for more company: under no load
it is one item, under load it is everything that queued while the last one was written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from jitctl.errors import AuditError

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Entry(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """``submit(item)`` returns ``flush([..., item, ...])``'s result for ``item``."""

    def __init__(self, flush: Callable[[list[Item]], list[Result]]) -> None:
        self._flush = flush
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # a batch was written: its callers go on
        self._arrived = threading.Condition(lock)  # an item was queued (wait_queued only)
        self._queue: list[_Entry[Item, Result]] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        entry: _Entry[Item, Result] = _Entry(item)
        with self._cond:
            self._queue.append(entry)
            self._arrived.notify_all()  # not _cond: that would wake every queued caller
            while self._leading and not entry.done:
                self._cond.wait()
            lead = not entry.done
            if lead:
                self._leading = True
                batch, self._queue = self._queue, []
        if lead:
            self._lead(batch)
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    def _lead(self, batch: list[_Entry[Item, Result]]) -> None:
        try:
            results = self._flush([entry.item for entry in batch])
            for entry, result in zip(batch, results, strict=True):
                entry.result = result
        except Exception as exc:  # every caller in the batch hears why
            for entry in batch:
                entry.error = exc
        except BaseException:  # Ctrl-C in the leader: the others must not hang, nor see it
            for entry in batch:
                entry.error = AuditError("the audit write was interrupted; nothing acknowledged")
            raise
        finally:
            with self._cond:
                for entry in batch:
                    entry.done = True
                self._leading = False
                self._cond.notify_all()

    def wait_queued(self, count: int, timeout: float) -> bool:
        """Whether ``count`` items are queued behind the batch being written (within
        ``timeout`` seconds): lets a test line up a batch without sleeping."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._queue) >= count, timeout)
