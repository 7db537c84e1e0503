"""Waiting in tests: on an observable condition with a deadline that fails loudly, never a
fixed sleep. To show that something did *not* happen, wait for a later marker first (e.g.
the service's commit past a record sent after the one that must have no effect, as
``tests.kafka_helpers.wait_committed`` does), then look."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

POLL_S = 0.05


async def until(
    what: str,
    probe: Callable[[], T | Awaitable[T]],
    timeout: float = 60,
    *,
    done: Callable[[T], object] = bool,
) -> T:
    """Call ``probe`` (plain or async) until ``done`` holds for what it returns (by default:
    until that is truthy), and return it. After ``timeout`` seconds fail with an
    AssertionError naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        result: Any = probe()
        value: T = await result if inspect.isawaitable(result) else result
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}; last saw {value!r:.500}")
        await asyncio.sleep(POLL_S)
