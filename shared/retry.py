"""Whose fault a failure is, and waiting out the infrastructure's.

One classification for every consumer (DESIGN.md, "Failures: one policy"):

- the **infrastructure's fault** — MongoDB or Kafka unreachable, not primary, shutting down,
  auth refused, disk full, a timeout, a transaction conflict — passes by itself or by an
  operator's hand, never by dropping the record: it is waited out with capped exponential
  backoff (:func:`retry_transient`), and while it lasts :func:`outages` names it for
  ``/readyz``;
- everything else is **the record's fault** (it cannot be read, is out of range, is refused,
  or a bug trips over it): the record goes to its DLQ with a reason code and the partition
  moves on.

A Kafka error is the infrastructure's unless it says the record itself is too large: a
message the broker refuses for its size is refused again on every retry.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
    WriteConcernError,
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
    WaitQueueTimeoutError,
    WriteConcernError,
    KafkaError,
    asyncio.TimeoutError,
    ConnectionError,
)
# A record (or a batch of them) the broker refuses for its size: retrying cannot help.
TOO_LARGE_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
)
# MongoDB server codes that say the server, not the data, is in the way
# (https://www.mongodb.com/docs/manual/reference/error-codes/).
INFRASTRUCTURE_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        11,  # UserNotFound
        13,  # Unauthorized
        18,  # AuthenticationFailed
        24,  # LockTimeout
        46,  # LockBusy
        43,  # CursorNotFound (a server restarted under a long read)
        50,  # MaxTimeMSExpired
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        112,  # WriteConflict
        134,  # ReadConcernMajorityNotAvailableYet
        175,  # QueryPlanKilled
        237,  # CursorKilled
        279,  # ClientDisconnect
        189,  # PrimarySteppedDown
        202,  # NetworkInterfaceExceededTimeLimit
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11601,  # Interrupted
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        14031,  # OutOfDiskSpace
    }
)
_DISK_FULL = ("no space left on device", "out of disk space")


def is_record_too_large(exc: BaseException) -> bool:
    return isinstance(exc, TOO_LARGE_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """The infrastructure's fault: wait, retry, never dead-letter.

    That includes a transaction in conflict (e.g. with one left open by a killed instance
    until the server aborts it), auth refused (credentials are fixed by an operator, not by
    dropping data) and a full disk.
    """
    if is_record_too_large(exc):
        return False
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if not isinstance(exc, PyMongoError):
        return False
    if exc.has_error_label("TransientTransactionError") or exc.has_error_label(
        "UnknownTransactionCommitResult"
    ):
        return True
    if isinstance(exc, OperationFailure):
        if exc.code in INFRASTRUCTURE_CODES:
            return True
        text = str(exc).lower()
        return any(marker in text for marker in _DISK_FULL)
    return False


# ------------------------------------------------------------------ outages, for /readyz

_outages: dict[int, tuple[str, float]] = {}
_ids = itertools.count()


def outages() -> list[dict[str, object]]:
    """What this process is waiting for right now: one entry per waiting operation."""
    now = time.monotonic()
    return [
        {"error_type": error, "waiting_s": round(now - since, 1)}
        for error, since in sorted(_outages.values(), key=lambda o: o[1])
    ]


class _Wait:
    """Logs a long wait without flooding: the first retry, then one line a power of two."""

    def __init__(self) -> None:
        self.key = next(_ids)

    def failed(self, exc: BaseException | None, attempt: int) -> None:
        name = type(exc).__name__
        _outages.setdefault(self.key, (name, time.monotonic()))
        if attempt & (attempt - 1) == 0:  # 1, 2, 4, 8, ...: a long outage logs a few lines
            log.warning("transient failure; waiting", attempt=attempt, error_type=name)

    def before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.failed(exc, state.attempt_number + 1)  # the first attempt came before the loop

    def done(self) -> None:
        _outages.pop(self.key, None)


FIRST_WAIT_S = 0.05


async def retry_transient(operation: Callable[[], Awaitable[T]], max_wait_s: float = 10.0) -> T:
    """Run ``operation`` until it succeeds; an outage is waited out (capped exponential
    backoff), never turned into a lost message, and shown by :func:`outages` meanwhile.
    Anything that is not the infrastructure's fault propagates at once. The first attempt
    runs bare (nearly every call succeeds at once: no retry machinery on the hot path)."""
    try:
        return await operation()
    except Exception as exc:
        if not is_transient(exc):
            raise
        first: Exception = exc
    wait = _Wait()
    wait.failed(first, 1)
    try:
        await asyncio.sleep(FIRST_WAIT_S)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.05, max=max_wait_s, jitter=0.1),
            before_sleep=wait.before_sleep,
            reraise=True,
        ):
            with attempt:
                return await operation()
    finally:
        wait.done()
    raise AssertionError("unreachable: AsyncRetrying without stop always returns or raises")
