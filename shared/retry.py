"""Waiting out what passes by itself: outages and transaction conflicts, never bad data."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    NotPrimaryError,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from shared.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    NotPrimaryError,
    ServerSelectionTimeoutError,
    KafkaError,
    asyncio.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """An outage or a conflict that passes by itself: retry, never dead-letter.

    That includes a transaction that stayed in conflict past ``with_transaction``'s own
    retries, e.g. with one left open by a killed instance until the server aborts it.
    """
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, PyMongoError) and (
        exc.has_error_label("TransientTransactionError")
        or exc.has_error_label("UnknownTransactionCommitResult")
    )


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "transient failure, retrying",
        attempt=state.attempt_number,
        error_type=type(exc).__name__,
    )


async def retry_transient(operation: Callable[[], Awaitable[T]], max_wait_s: float = 10.0) -> T:
    """Run ``operation`` until it succeeds; a database or broker outage is waited out,
    never turned into a lost message. Anything not transient propagates at once."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.1, max=max_wait_s),
        before_sleep=_log_retry,
        reraise=True,
    ):
        with attempt:
            return await operation()
    raise AssertionError("unreachable: AsyncRetrying without stop always returns or raises")
