"""structlog set-up: JSON when not on a terminal, and PII masked wherever it appears.

Every log line, ours and the libraries' (FastStream, aiokafka, pymongo go through the same
formatter), passes :func:`mask_pii`, so a NIK, KK, phone number or e-mail address that slips
into a message, a bound value or an exception text is replaced before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import structlog

if TYPE_CHECKING:  # the envelope's module imports the tracing one, which imports this one
    from shared.envelope import Envelope

# 16 digits (NIK, KK), Indonesian mobile numbers in any of their spellings, e-mail addresses.
# Each is linear in the text: a match may only start where a run of its characters starts
# (the look-behinds), and the e-mail's runs are possessive, so a long run without an "@" is
# scanned once, not once per starting position (a 40 KB value took seconds before).
_PATTERNS = (
    (re.compile(r"(?<!\d)\d{16}(?!\d)"), "[NIK/KK]"),
    (re.compile(r"(?<![\w+])(?:\+?62|0)[\s-]?8[\d\s-]{7,16}\d(?!\d)"), "[PHONE]"),
    (re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+"), "[EMAIL]"),
)
_PII_KEYS = frozenset({"nik", "kk", "phone", "email", "full_name"})
# A W3C trace id is 32 hex digits; one that starts with 16 decimal ones (about 1 in 100) is
# not a NIK, and masking it would cut the log line from its trace.
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# A value longer than this is cut before it is masked and written: a log line stays a line.
MAX_VALUE_CHARS = 4000
# The same warning or error (logger, message, error type) within this many seconds is
# counted, not written; the next one written says how many were left out.
REPEAT_INTERVAL_S = 10.0


class Processed(NamedTuple):
    """The event being processed, as :func:`shared.tracing.processing` sets it."""

    envelope: Envelope
    participant_id: str | None
    trace_id: int  # 0: none (an exported span without a valid context)
    traceparent: str | None  # what the events it causes carry; None while a span is current


# The event being processed in this context (one set and one reset per event).
processed: ContextVar[Processed | None] = ContextVar("processed", default=None)


def mask_text(text: str) -> str:
    """Masked first (the patterns are linear), then cut to its head and tail, so nothing
    personal straddles the cut and a traceback keeps its last lines."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > MAX_VALUE_CHARS:
        half = MAX_VALUE_CHARS // 2
        text = f"{text[:half]} ... [{len(text) - 2 * half} chars cut] ... {text[-half:]}"
    return text


class _Repeats(logging.Filter):
    """A storm of one warning or error (same logger, message and error type) becomes one line
    per interval; the next line written says how many were left out (``repeated``). A
    filter on the handler, so that the libraries' lines are held to it too."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self.last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        event = record.msg if isinstance(record.msg, dict) else None  # structlog's own lines
        text = str(event.get("event", "")) if event is not None else str(record.msg)
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        if event is not None:
            error = str(event.get("error_type", error))
        key = (record.name, text[:200], error)
        now = self.clock()
        since, skipped = self.last.get(key, (0.0, 0))
        if key in self.last and now - since < self.interval_s:
            self.last[key] = (since, skipped + 1)
            return False
        if len(self.last) > 10_000:  # keys come from code, but stay bounded all the same
            self.last.clear()
        self.last[key] = (now, 0)
        if skipped and event is not None:
            event["repeated"] = skipped
        elif skipped:
            record.msg, record.args = f"{record.getMessage()} (repeated {skipped} times)", ()
        return True


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: ("[MASKED]" if k in _PII_KEYS else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _flatten_extra(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """FastStream logs ``extra={...}``: lift it to top-level keys like any bound value."""
    extra = event_dict.pop("extra", None)
    if isinstance(extra, dict):
        for key, value in extra.items():
            event_dict.setdefault(key, value)
    if event_dict.get("exc_info") is None:
        event_dict.pop("exc_info", None)
    return event_dict


def add_event_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor (ours and the libraries' lines): the event being processed, if
    any. What the line itself says is kept, as :func:`structlog.contextvars.merge_contextvars`
    keeps it over the bound context."""
    now = processed.get()
    if now is None:
        return event_dict
    envelope, participant_id, trace_id, _traceparent = now
    setdefault = event_dict.setdefault
    setdefault("event_id", envelope.id)
    setdefault("event_type", envelope.type)
    setdefault("correlation_id", envelope.correlation_id or envelope.id)
    setdefault("participant_id", participant_id)
    setdefault("trace_id", format(trace_id, "032x") if trace_id else None)
    return event_dict


def mask_pii(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor; runs last before rendering, so exception texts are masked too."""
    trace_id = event_dict.get("trace_id")
    masked = {k: ("[MASKED]" if k in _PII_KEYS else _mask(v)) for k, v in event_dict.items()}
    if isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id):
        masked["trace_id"] = trace_id
    return masked


def configure_logging(
    service: str, level: str = "INFO", stream: IO[str] | None = None, json: bool | None = None
) -> None:
    """Route structlog and the standard library's logging through one masked renderer."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        _flatten_extra,
        structlog.contextvars.merge_contextvars,
        add_event_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_pii,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_Repeats())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for own_handlers in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(own_handlers).handlers = []
        logging.getLogger(own_handlers).propagate = True
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
