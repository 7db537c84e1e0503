"""The tests' one way of waiting: it returns what it waited for, or fails saying what."""

from __future__ import annotations

import pytest

from tests.waiting import until


async def test_until_returns_what_it_waited_for_plain_or_async() -> None:
    seen: list[int] = []

    def grows() -> list[int]:
        seen.append(len(seen))
        return seen

    assert await until("three probes", grows, 5, done=lambda s: len(s) >= 3) == [0, 1, 2]

    async def ready() -> str:
        return "ready"

    assert await until("an async probe", ready, 5) == "ready"


async def test_until_fails_loudly_naming_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"for the marker; last saw \{'count': 0\}"):
        await until("the marker", lambda: {"count": 0}, 0.2, done=lambda b: b["count"] > 0)
