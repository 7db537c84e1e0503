"""Where each kind of personal data goes, how it is kept, for how long and why (UU 27/2022).

The contract catalogue marks every personal field with its category (``shared.contracts.pii``);
this module says, per category, its purpose and where the services store it, and renders both
into ``docs/personal-data.md`` (``python -m shared.personal_data`` writes it; a test fails when
the file is stale, when a contract has a field that looks personal but is not marked, or when
a marked category is not accounted for here).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.contracts import CATALOGUE, PII_CATEGORIES, personal_fields

DOC = Path(__file__).resolve().parent.parent / "docs" / "personal-data.md"

# A field whose name says it is about a person; it must carry a pii mark (or be listed in
# NOT_PERSONAL with the reason).
LOOKS_PERSONAL = re.compile(
    r"(^|_)(nik|kk|nib|name|phone|email|birth_date|address|kelurahan|contact|notes|number"
    r"|description)($|_)"
)
NOT_PERSONAL = {
    # a template's name, e.g. "training-enrolled", is the message kind, not a person's
    ("notification-sent", "template"): "the message kind",
    ("notification-failed", "template"): "the message kind",
    ("financing-referred", "product_name"): "the credit product's name (e.g. KUR Mikro)",
}


@dataclass(frozen=True)
class Store:
    service: str
    where: str  # collection.field, or a topic
    form: str  # how it is kept there
    kept: str  # for how long


@dataclass(frozen=True)
class Category:
    purpose: str
    stores: tuple[Store, ...]


_UNTIL_ERASED = "until the participant's erasure (then deleted)"
_SUBMISSIONS = Store(
    "portal -> registry",
    "topic registration-submitted (and its DLQ)",
    "in clear on the topic; in its DLQ encrypted field by field",
    "the personal-data retention (7 days by default)",
)
_FACTS = Store(
    "the systems, coaching, marketplace",
    "topics of the facts and outcomes that carry them (and their DLQs)",
    "in clear on the topics; in the DLQs encrypted field by field",
    "the personal-data retention (7 days by default)",
)
# A service's outbox row holds an event's value until the broker acknowledges the event.
_OUTBOX_ROWS = (
    "an outbox row until its event is published (then deleted; one the broker refused for "
    "its size stays, for an operator)"
)
_OUTBOX = Store(
    "registry",
    "outbox (its participant-contact events)",
    "in clear; deleted with the participant",
    _OUTBOX_ROWS,
)
_CONTACT_TOPIC = Store(
    "registry -> notifications",
    "topic participant-contact",
    "in clear, compacted: each participant's latest record only",
    "until a tombstone (erasure) replaces it",
)

CATEGORIES: dict[str, Category] = {
    "identity-number": Category(
        "Identify the applicant (a DKI Jakarta KTP) and refuse a second registration of one "
        "person (Perpres 39/2019 data; the programme's eligibility).",
        (
            _SUBMISSIONS,
            Store(
                "registry",
                "participants.nik_hash",
                "keyed HMACs, one per key of the hash ring, for duplicate look-up only",
                _UNTIL_ERASED + ": the NIK is unknown again, re-registration makes a new "
                "participant, and nothing stored re-identifies the old one",
            ),
            Store(
                "registry",
                "participants.nik_encrypted, participants.kk_encrypted",
                "Fernet ciphertext (versioned keys, rotated by `jakpreneur keys rotate`)",
                _UNTIL_ERASED,
            ),
        ),
    ),
    "name": Category(
        "Address the participant in messages and identify them to ops and to themself.",
        (
            _SUBMISSIONS,
            _CONTACT_TOPIC,
            Store("registry", "participants.full_name, .display_name", "in clear", _UNTIL_ERASED),
            _OUTBOX,
            Store(
                "notifications",
                "contacts.display_name, jobs (the rendered message)",
                "in clear",
                "until the erasure: the contact deleted, each job stripped to template, "
                "channel, status and times",
            ),
        ),
    ),
    "birth-date": Category(
        "Check the age rule and that it agrees with the NIK; only the birth year travels on "
        "(age bands).",
        (
            _SUBMISSIONS,
            Store("registry", "participants.birth_date", "in clear", _UNTIL_ERASED),
        ),
    ),
    "contact": Category(
        "Send the participant the programme's messages (WhatsApp, SMS, e-mail).",
        (
            _SUBMISSIONS,
            _CONTACT_TOPIC,
            Store("registry", "participants.contact", "in clear", _UNTIL_ERASED),
            _OUTBOX,
            Store(
                "notifications",
                "contacts, jobs (the recipient of each message)",
                "in clear",
                "until the erasure: the contact deleted, each job stripped to template, "
                "channel, status and times",
            ),
        ),
    ),
    "address": Category(
        "Place the participant below the kecamatan for outreach; statistics use only the "
        "city and kecamatan.",
        (
            _SUBMISSIONS,
            Store("registry", "participants.kelurahan", "in clear", _UNTIL_ERASED),
        ),
    ),
    "business-id": Category(
        "Identify the participant's business and products for licensing (NIB from OSS, "
        "certificates) and curation.",
        (
            _SUBMISSIONS,
            _FACTS,
            Store("registry", "participants.business_name, .nib", "in clear", _UNTIL_ERASED),
            Store(
                "coaching",
                "participants (product names, certificate numbers), outbox",
                "in clear",
                "until the erasure: blanked; " + _OUTBOX_ROWS,
            ),
        ),
    ),
    "free-text": Category(
        "Record what a pendamping or a curator observed, for the next step and for the "
        "participant's own view.",
        (
            _FACTS,
            Store(
                "coaching",
                "participants (mentoring session notes, product descriptions)",
                "in clear",
                "until the erasure: blanked",
            ),
            Store(
                "marketplace",
                "participants (curation reviews' notes), parked reviews, outbox",
                "in clear",
                "until the erasure: blanked; " + _OUTBOX_ROWS + "; a review parked before "
                "its product is known is not linked to anyone: it keeps its notes until it "
                "applies (then blanked) or its parking expires (to the DLQ, sealed)",
            ),
        ),
    ),
}


def unmarked() -> list[str]:
    """Fields that look personal but carry no category: each needs one (or a reason)."""
    found = []
    for event in CATALOGUE:
        marked = personal_fields(event)
        for name in _field_names(event):
            leaf = name.rsplit(".", 1)[-1]
            personal = LOOKS_PERSONAL.search(leaf) and name not in marked
            if personal and (event.name, name) not in NOT_PERSONAL:
                found.append(f"{event.name}.{name}")
    return found


def _field_names(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    names = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        names.append(prefix + (info.alias or name))
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names += _field_names(arg, f"{prefix}{info.alias or name}.")
    return names


def render() -> str:
    """docs/personal-data.md, from the catalogue's marks and :data:`CATEGORIES`."""
    lines = [
        "# Personal data: where it flows, how it is kept, for how long, and why",
        "",
        "Generated by `python -m shared.personal_data` from the contract catalogue's marks",
        "(`shared/contracts/`, `pii(...)`) and `shared/personal_data.py`; do not edit by hand.",
        "",
        "On an erasure request (`participant-erasure-requested`) every service erases or",
        "irreversibly pseudonymises what it holds of that participant and answers with",
        "`participant-data-erased`; what the funnel needs (city, kecamatan, sector, stages and",
        "their dates) stays, with nothing that identifies the person.",
        "",
        "Withdrawal of consent (`consent-withdrawn`) stops processing: no enrolment, referral",
        "or message any more, pending messages cancelled; the data stays until an erasure.",
        "An erasure request names who asked (`requested_by`): the participant, or an officer's",
        "role and token subject, which some identity providers make an e-mail address.",
        "",
        "## Fields on the bus",
        "",
        "| event (topic) | field | category | written by | read by |",
        "|---|---|---|---|---|",
    ]
    for event in CATALOGUE:
        for field, category in personal_fields(event).items():
            lines.append(
                f"| `{event.name}` | `{field}` | {category} | {', '.join(event.producers)} "
                f"| {', '.join(event.consumers) or '-'} |"
            )
    lines += ["", "## Categories", ""]
    for name in PII_CATEGORIES:
        kind = CATEGORIES[name]
        lines += [
            f"### {name}",
            "",
            f"Purpose: {kind.purpose}",
            "",
            "| held by | where | how | kept |",
            "|---|---|---|---|",
        ]
        lines += [f"| {s.service} | {s.where} | {s.form} | {s.kept} |" for s in kind.stores]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    sys.stderr.write(f"wrote {DOC}\n")


if __name__ == "__main__":
    main()
