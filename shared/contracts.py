"""The contract catalogue: one pydantic model per event type, every field described.

Consumers read tolerantly (unknown fields are ignored). A breaking change is a new type with a
higher major version; ``tests/shared/test_contracts.py`` compares each model with its
checked-in JSON-Schema snapshot under ``shared/schemas`` and fails on an incompatible change.
Run ``python -m shared.contracts`` to write the snapshots after a compatible change.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_DIR = Path(__file__).with_name("schemas")


class Part(BaseModel):
    """Base of every contract and of the models nested in them: read tolerantly."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Event(Part):
    """Base of every contract. ``name`` is also the topic; ``ce_type`` carries the version."""

    name: ClassVar[str]
    version: ClassVar[int] = 1

    @classmethod
    def ce_type(cls) -> str:
        return f"jakpreneur.{cls.name}.v{cls.version}"


# --------------------------------------------------------------------------- P1 registry


class RegistrationSubmitted(Event):
    """A person asks to join Jakpreneur (portal, JAKI app or a kelurahan officer).

    Types are checked here; the programme's rules (NIK structure, age, phone format, known
    city and sector, ...) are the registry's, and each broken rule becomes a reason code.
    """

    name: ClassVar[str] = "registration-submitted"

    submission_id: str = Field(min_length=1, description="Unique per submission; idempotency key.")
    nik: str = Field(description="Nomor Induk Kependudukan, 16 digits, a DKI Jakarta KTP.")
    kk: str = Field(description="Nomor Kartu Keluarga, 16 digits.")
    full_name: str = Field(description="Name as on the KTP.")
    birth_date: date = Field(description="YYYY-MM-DD; must agree with NIK digits 7-12.")
    gender: str = Field(description="`L` (laki-laki) or `P` (perempuan).")
    phone: str = Field(description="Indonesian mobile number: 0812..., 62812... or +62812...")
    email: str | None = Field(default=None, description="Optional e-mail address.")
    city: str = Field(
        description="Jakarta Pusat | Jakarta Utara | Jakarta Barat | Jakarta Selatan | "
        "Jakarta Timur | Kepulauan Seribu"
    )
    kecamatan: str = Field(description="District of residence.")
    kelurahan: str = Field(description="Sub-district of residence.")
    sector: str = Field(description="kuliner | fashion | kriya | jasa | agribisnis | lainnya")
    has_business: bool = Field(description="Whether the person already runs a business.")
    business_name: str | None = Field(default=None, description="Name of the business, if any.")
    nib: str | None = Field(default=None, description="Nomor Induk Berusaha, 13 digits, if any.")
    consent: bool = Field(description="Consent to processing of personal data; must be true.")
    channel: Literal["portal", "jaki", "kelurahan"] = Field(
        description="Where the submission was made."
    )


class Contact(Part):
    phone: str = Field(description="E.164 mobile number, e.g. +6281234567890.")
    email: str | None = Field(default=None, description="E-mail address, if given.")


class ParticipantRegistered(Event):
    """A submission passed every rule; the participant now exists. Never carries NIK or KK."""

    name: ClassVar[str] = "participant-registered"

    participant_id: str = Field(description="Random UUID; not derivable from the NIK.")
    submission_id: str = Field(description="The submission this answers.")
    registered_at: datetime = Field(description="When the registry accepted it.")
    city: str = Field(description="City of residence.")
    kecamatan: str = Field(description="District of residence.")
    kelurahan: str = Field(description="Sub-district of residence.")
    sector: str = Field(description="Business sector.")
    has_business: bool = Field(description="Whether the participant already runs a business.")
    gender: Literal["L", "P"] = Field(description="L or P.")
    birth_year: int = Field(description="Year of birth (for age bands; no full date).")
    display_name: str = Field(description="First name, for greetings.")
    contact: Contact = Field(description="How to reach the participant.")


class Reason(Part):
    code: str = Field(description="Machine-readable reason, e.g. `invalid-nik`.")
    field: str | None = Field(description="The submission field at fault, if one is.")
    message: str = Field(description="Human-readable explanation (never echoes NIK or KK).")


class RegistrationRejected(Event):
    """A submission broke one or more rules; every problem found is listed."""

    name: ClassVar[str] = "registration-rejected"

    submission_id: str = Field(description="The submission this answers.")
    rejected_at: datetime = Field(description="When the registry decided.")
    reasons: list[Reason] = Field(min_length=1, description="Every problem found.")
    participant_id: str | None = Field(
        default=None, description="For `already-registered`: the existing participant."
    )


CATALOGUE: tuple[type[Event], ...] = (
    RegistrationSubmitted,
    ParticipantRegistered,
    RegistrationRejected,
)


def validate_fields(
    model: type[BaseModel], raw: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate ``raw`` (parsed JSON) field by field, strictly, as JSON would be.

    Returns the values that are valid and, per field, why the others are not. Unlike a plain
    ``model_validate`` this keeps the good fields, so rules over them can still run and a
    rejection can name every problem, not only the schema's.
    """
    try:
        whole = model.model_validate_json(json.dumps(raw), strict=True)
        return whole.model_dump(), {}
    except ValidationError:
        pass
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if name not in raw:
            if info.is_required():
                errors[name] = "field required"
            else:
                values[name] = info.get_default(call_default_factory=True)
            continue
        # Annotated with the field's metadata, so constraints such as min_length still apply.
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]
        try:
            values[name] = adapter.validate_json(json.dumps(raw[name]), strict=True)
        except ValidationError as exc:
            errors[name] = "; ".join(err["msg"] for err in exc.errors())
    return values, errors


_DOC_KEYS = frozenset({"description", "title", "examples"})


def _shape(schema: Any) -> Any:
    """A schema without its prose, for comparing what a field accepts."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """What in ``new`` breaks a consumer or producer written against ``old``: a removed or
    retyped field, or a new required field (also inside nested models' ``$defs``)."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_field in old_props.items():
        if name not in new_props:
            problems.append(f"{where}{name}: removed")
        elif _shape(old_field) != _shape(new_props[name]):
            problems.append(f"{where}{name}: type changed")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{where}{name}: newly required")
    for name, old_def in old.get("$defs", {}).items():
        if name not in new.get("$defs", {}):
            problems.append(f"{where}{name}: nested model removed")
        else:
            problems += incompatibilities(old_def, new["$defs"][name], f"{where}{name}.")
    return problems


def write_snapshots(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event in CATALOGUE:
        path = directory / f"{event.ce_type()}.json"
        path.write_text(json.dumps(event.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_snapshots():
        sys.stdout.write(f"wrote {written_path}\n")
