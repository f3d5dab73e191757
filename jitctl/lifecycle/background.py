"""One lookup on a thread while the caller goes on (the on-call check while a request is
recorded): its result, or its error, handed back on the caller's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


def in_background(fn: Callable[[], T]) -> Callable[[], T]:
    """Start ``fn`` on a thread; the function returned waits for it and returns its result or
    raises its error, on the caller's thread."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to whoever waits: nothing is lost or printed
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="jitctl-lookup", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        done, value = outcome[0]
        if not done:
            raise value
        return cast(T, value)

    return result
