"""The kernel of the contracts: the bases every contract is built on (``Part``, ``Event``), the
bounded value types (``Id``, ``Name``, ``Text``, ``Month``, ``Instant``, ...), the limits, the
personal-data marks (``pii``) and the one refusal type (``Refusal``). The contracts themselves
live one module per producer beside this one."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# ------------------------------------------------------------------ limits, as data
# Every value a contract carries is bounded, so a hostile record is refused where it is read
# (a reason code, or the DLQ) and never reaches a store, a log or a comparison that would
# choke on it. The JSON Schemas (and so the AsyncAPI documents) show each bound.

MAX_RECORD_BYTES = 64 * 1024  # a record's value; the largest real one is under 2 KB
MAX_ITEMS = 50  # entries of a list
MAX_SESSIONS = 100  # training or mentoring sessions
MAX_COUNT = 1_000_000_000  # transactions in a month
MAX_RUPIAH = 10**15  # Rp 1,000 trillion: above any UMKM figure, far inside int64
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# C0/C1 controls (but tab and newlines in free text), DEL, and lone surrogates, which no
# store or provider can encode.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def in_bounds(time: datetime) -> datetime:
    """``time`` in UTC if it lies in [2000, 2100), else ValueError: no later conversion or
    comparison can overflow (a year 9999 at -12:00 does) and no producer's clock can pass a
    date this programme cannot have. A time without an offset is taken as UTC."""
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    try:
        utc = time.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"time outside [{EARLIEST.year}, {LATEST.year})")
    return utc


def is_plain(value: str) -> bool:
    """No control characters and no lone surrogates."""
    return _CONTROL.search(value) is None


def _plain(value: str) -> str:
    if not is_plain(value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _plain_multiline(value: str) -> str:
    if _CONTROL_MULTILINE.search(value):
        raise ValueError("control characters and lone surrogates are not allowed")
    return value


def _nfkc(value: str) -> str:
    """Fullwidth and other compatibility digits become ASCII ones (U+FF13 -> "3"), so one
    number has one spelling; what is still not ASCII digits its owner's rule refuses."""
    return _plain(unicodedata.normalize("NFKC", value))


Id = Annotated[str, AfterValidator(_plain), Field(min_length=1, max_length=100)]
Name = Annotated[str, AfterValidator(_plain), Field(max_length=200)]
Text = Annotated[str, AfterValidator(_plain_multiline), Field(max_length=2000)]
Digits = Annotated[str, AfterValidator(_nfkc), Field(max_length=32)]
Phone = Annotated[str, AfterValidator(_nfkc), Field(max_length=32)]
Email = Annotated[str, AfterValidator(_nfkc), Field(max_length=254)]
Month = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", max_length=7)]
Instant = Annotated[datetime, AfterValidator(in_bounds)]


# ------------------------------------------------------------------ personal data, as data
# Every field that says something about a person carries its category here
# (``json_schema_extra={"pii": ...}``, shown in the JSON Schemas and the AsyncAPI documents).
# docs/personal-data.md is generated from these marks and shared/personal_data.py (where
# each category is stored, for how long and why); a test fails when a contract gains a
# personal field the map does not account for.
PII_CATEGORIES = (
    "identity-number",  # NIK, KK: identify a person and their family
    "name",  # a person's name, whole or first
    "birth-date",  # the full date of birth
    "contact",  # phone number, e-mail address
    "address",  # below the kecamatan: the kelurahan
    "business-id",  # NIB, the business's and products' names, certificate numbers: identify
    # a sole trader
    "free-text",  # notes written by officers or pendamping: may name or describe the person
)


def pii(category: str) -> dict[str, Any]:
    """A field's ``json_schema_extra`` marking it personal data of ``category``."""
    assert category in PII_CATEGORIES, category
    return {"pii": category}


class Refusal(Exception):
    """A fact that cannot be applied, now or later, for a reason with a code (``code``): it
    goes to its topic's DLQ under that code (``dlq_error_type``). The one refusal type of
    the kernel and of every service's domain rules."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Part(BaseModel):
    """Base of every contract and of the models nested in them: read tolerantly. A field
    whose wire name clashes with Python (``name``) is declared with that name as alias."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, serialize_by_alias=True, validate_by_name=True
    )


class Event(Part):
    """Base of every contract. ``name`` is also the topic; ``ce_type`` carries the version."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    max_bytes: ClassVar[int] = MAX_RECORD_BYTES
    # Who writes and who reads the topic: services by name, internal systems by their
    # principal (a system reads what it reacts to: the LMS a cohort, Bank DKI a referral,
    # the portal an outcome). The one source of the Kafka ACLs (shared/access.py), of the
    # ce_source a consumer accepts and of each service's subscriptions (``consumed_by``).
    producers: ClassVar[tuple[str, ...]] = ()
    consumers: ClassVar[tuple[str, ...]] = ()
    compacted: ClassVar[bool] = False  # the topic keeps each key's latest record

    @classmethod
    def ce_type(cls) -> str:
        return f"jakpreneur.{cls.name}.v{cls.version}"


class ParticipantEvent(Event):
    """Base of every event about one participant, who is also its record's key: code reads
    ``event.participant_id`` with its type (after ``isinstance(event, ParticipantEvent)``).

    Each contract declares the field itself, where it always stood and with its own
    description ("Its owner.", "The mentee."): pydantic puts an inherited field first, which
    would reorder the published payloads and the schemas' ``required`` lists. So the base
    states the field for the type checker and refuses a subclass that does not declare it
    required."""

    if TYPE_CHECKING:
        participant_id: Id

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("participant_id")
        if field is None or not field.is_required():
            raise TypeError(f"{cls.__name__}: an event about a participant requires participant_id")


# One rule met or failed, as coaching's and the marketplace's events list them. (No docstring:
# it would become the schema's description and change the published snapshots.)
class Finding(Part):
    code: Name = Field(description="Machine-readable reason code.")
    message: Text = Field(description="Human-readable explanation.")
