"""The participant journey read model: which stages of the 7P each participant reached and
when, built from every service's events; the programme funnel over it, and the outcomes the
programme exists for (naik kelas, go-international, financing). Pure.

Times are business times (:attr:`shared.envelope.Envelope.occurred_at`): when the fact
happened in the programme's calendar, which travels from cause to caused event, not when a
service happened to publish it. So "median days" measures the programme.

A journey document holds:

- ``profile``: city, kecamatan, sector, has_business, registered_month (the filters);
- ``stages``: stage -> the earliest business time it was reached (first time wins);
- ``sales_months``, ``mentor_id``;
- ``class_history``: each ``business-class-changed`` (from, to, annual sales, basis months,
  annualised, assessed_at, its business time ``at`` and event id), added once per event;
- ``financing_approvals``: each ``financing-approved`` (referral id, amount in rupiah);
- ``exported_products``: the products facilitated for export.

The stage ``naik-kelas`` is derived from the class history when read (:func:`stages_of`):
the first change to a class above the class first known. A first class is not a move; a move
down and up again neither re-dates it nor, from below the first class, counts. Derived on
read, it is the same whatever order the changes arrived in. Which changes there are depends
on the order the months were reported in, though: the marketplace announces the class of
each ledger as it grows, so a year reported newest month first announces the year's class
at once (first known, no move), where the same months in order may show a move up.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.contracts import (
    BusinessClassChanged,
    Event,
    ExportFacilitated,
    FinancialReportRecorded,
    FinancingApproved,
    MentoringAssigned,
    MentoringCompleted,
    ParticipantEvent,
)

# Event name -> journey stage. The registry's own registration is the first stage.
STAGE_OF_EVENT: Mapping[str, str] = {
    "participant-registered": "registered",
    "training-enrolled": "training-enrolled",
    "training-completed": "training-completed",
    "training-not-completed": "training-not-completed",
    "mentoring-assigned": "mentoring-assigned",
    "mentoring-completed": "mentoring-completed",
    "product-certified": "product-certified",
    "product-curated": "product-curated",
    "product-listed": "product-listed",
    "export-facilitated": "export-facilitated",
    "financial-report-recorded": "sales-reported",
    "financing-referred": "financing-referred",
    "financing-approved": "financing-approved",
    "financing-declined": "financing-declined",
}
# Events that add to the journey without a stage of their own.
CLASS_EVENT = BusinessClassChanged.name
NAIK_KELAS = "naik-kelas"
CLASSES: Sequence[str] = ("mikro", "kecil", "menengah", "besar")  # PP 7/2021, in order


@dataclass(frozen=True)
class Stage:
    name: str
    step: str  # the programme's facility, P1..P7
    after: str | None  # the stage its conversion and days are measured from
    main: bool = True  # on the funnel's main line; False: a branch (an outcome) beside it


# Every stage, in programme order. Each one's conversion is against the stage it comes
# ``after``; the main line is the funnel, each stage after the one before it; export and
# naik kelas are outcomes branching off it (not every listed product goes abroad).
STAGES: Sequence[Stage] = (
    Stage("registered", "P1", None),
    Stage("training-enrolled", "P2", "registered"),
    Stage("training-completed", "P2", "training-enrolled"),
    Stage("mentoring-assigned", "P3", "training-completed"),
    Stage("mentoring-completed", "P3", "mentoring-assigned"),
    Stage("product-certified", "P4", "mentoring-completed"),
    Stage("product-curated", "P5", "product-certified"),
    Stage("product-listed", "P5", "product-curated"),
    Stage("export-facilitated", "P5", "product-listed", main=False),
    Stage("sales-reported", "P6", "product-listed"),
    Stage(NAIK_KELAS, "P6", "sales-reported", main=False),
    Stage("financing-referred", "P7", "sales-reported"),
    Stage("financing-approved", "P7", "financing-referred"),
)
# The funnel's main line: each stage's conversion is against the one before it.
FUNNEL: Sequence[str] = tuple(s.name for s in STAGES if s.main)
# Reached by some, but not steps of the funnel.
SIDE_STAGES: Sequence[str] = ("training-not-completed", "financing-declined")
FILTERS: Sequence[str] = ("city", "kecamatan", "sector", "has_business", "registered_month")
# The fields of a journey that an HTTP caller's scope holds a read to (shared.auth's
# aggregate filters): a kota officer's city, a pendamping's mentees.
SCOPE_FIELDS: Mapping[str, str] = {
    "city": "profile.city",
    "kecamatan": "profile.kecamatan",
    "pendamping_id": "mentor_id",  # recorded from mentoring-assigned (and -completed)
}
# What the funnel reads of each journey.
FUNNEL_FIELDS: Mapping[str, int] = {
    "stages": 1,
    "class_history": 1,
    "financing_approvals": 1,
    "exported_products": 1,
    "profile.registered_month": 1,
}


# ------------------------------------------------------------------ opening the journey

# What a journey copies of its participant: the funnel's filters, nothing that identifies
# them; and beside them the month they registered, in Jakarta.
PROFILE_FIELDS: Sequence[str] = ("city", "kecamatan", "sector", "has_business")
MONTH_FORMAT = "%Y-%m"
TIME_ZONE = "Asia/Jakarta"
_JAKARTA = ZoneInfo(TIME_ZONE)


def opening(participant: Mapping[str, Any]) -> dict[str, Any]:
    """The journey a registration opens (``_id``, ``profile``, ``registered_at``: the time
    of the stage ``registered``), from the participant's stored document: registered when
    the submission happened (its business time), where the document says; before business
    times, when it was accepted. :func:`opening_stages` is the same for every participant
    stored, on the server."""
    at: datetime = participant.get("registered_business_at") or participant["registered_at"]
    profile = {name: participant[name] for name in PROFILE_FIELDS}
    profile["registered_month"] = at.astimezone(_JAKARTA).strftime(MONTH_FORMAT)
    return {"_id": participant["_id"], "registered_at": at, "profile": profile}


def opening_stages() -> list[dict[str, Any]]:
    """:func:`opening` as aggregation stages over the participants' documents, each to a
    journey's ``_id``, ``profile`` and ``stages.registered`` (the start-up backfill)."""
    return [
        {"$set": {"_at": {"$ifNull": ["$registered_business_at", "$registered_at"]}}},
        {
            "$project": {
                "profile": {
                    **{name: f"${name}" for name in PROFILE_FIELDS},
                    "registered_month": {
                        "$dateToString": {
                            "date": "$_at",
                            "format": MONTH_FORMAT,
                            "timezone": TIME_ZONE,
                        }
                    },
                },
                "stages.registered": "$_at",
            }
        },
    ]


# ------------------------------------------------------------------ writing the journey


@dataclass(frozen=True)
class Fact:
    """What one event adds to a participant's journey, at its business time."""

    participant_id: str
    at: datetime
    stage: str | None = None
    sales_month: str | None = None
    mentor_id: str | None = None
    class_change: Mapping[str, Any] | None = None
    financing: Mapping[str, Any] | None = None
    exported_product: str | None = None


def _class_change(event: BusinessClassChanged, event_id: str, at: datetime) -> dict[str, Any]:
    change = {
        "event_id": event_id,
        "from_class": event.from_class,
        "to_class": event.to_class,
        "annual_sales_idr": event.annual_sales_idr,
        "basis_months": event.basis_months,
        "annualised": event.annualised,
        "assessed_at": event.assessed_at,
        "at": at,
    }
    return {"class_change": change}


def _sales_month(event: FinancialReportRecorded, event_id: str, at: datetime) -> dict[str, Any]:
    return {"sales_month": event.period}


def _mentor(
    event: MentoringAssigned | MentoringCompleted, event_id: str, at: datetime
) -> dict[str, Any]:
    return {"mentor_id": event.mentor_id}


def _financing(event: FinancingApproved, event_id: str, at: datetime) -> dict[str, Any]:
    return {"financing": {"referral_id": event.referral_id, "amount_idr": event.amount_idr}}


def _exported(event: ExportFacilitated, event_id: str, at: datetime) -> dict[str, Any]:
    return {"exported_product": event.product_id}


# What an event adds to the journey beside its stage (fields of its Fact), by event name.
ADDS: Mapping[str, Callable[[Any, str, datetime], dict[str, Any]]] = {
    CLASS_EVENT: _class_change,
    FinancialReportRecorded.name: _sales_month,
    MentoringAssigned.name: _mentor,
    MentoringCompleted.name: _mentor,
    FinancingApproved.name: _financing,
    ExportFacilitated.name: _exported,
}


def fact_of(event: Event, event_id: str, at: datetime) -> Fact:
    """The journey's part of another service's event (``at``: its business time):
    the stage it marks, if any, and what it adds (:data:`ADDS`)."""
    assert isinstance(event, ParticipantEvent), event.name  # every journey event names one
    pid = event.participant_id
    adds = ADDS.get(event.name)
    added = adds(event, event_id, at) if adds is not None else {}
    return Fact(pid, at, stage=STAGE_OF_EVENT.get(event.name), **added)


def merged_updates(facts: Iterable[Fact]) -> dict[str, dict[str, Any]]:
    """One MongoDB update per participant for a whole batch of facts (in order): the
    earliest time of each stage, every sales month, class change, approval and exported
    product added once (a redelivered event adds nothing), the last pendamping named."""
    merged: dict[str, dict[str, Any]] = {}
    for fact in facts:
        update = merged.setdefault(fact.participant_id, {})
        if fact.stage is not None:
            earliest = update.setdefault("$min", {})
            name = f"stages.{fact.stage}"
            earliest[name] = min(fact.at, earliest.get(name, fact.at))
        for name, item in (
            ("sales_months", fact.sales_month),
            ("class_history", fact.class_change),
            ("financing_approvals", fact.financing),
            ("exported_products", fact.exported_product),
        ):
            if item:
                added = update.setdefault("$addToSet", {}).setdefault(name, {"$each": []})
                if item not in added["$each"]:
                    added["$each"].append(item)
        if fact.mentor_id:
            update["$set"] = {"mentor_id": fact.mentor_id}
    return merged


# ------------------------------------------------------------------- reading the journey


def class_history(journey: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The participant's class changes in business-time order, without event ids."""
    changes = sorted(
        journey.get("class_history") or [],
        key=lambda c: (c["at"], c["assessed_at"], CLASSES.index(c["to_class"])),
    )
    return [{k: v for k, v in c.items() if k != "event_id"} for c in changes]


@dataclass(frozen=True)
class ClassMove:
    """A participant's business classes: the first known, the highest reached, the latest,
    and when they first rose above the first (None: not yet)."""

    first: str
    highest: str
    now: str
    naik_kelas_at: datetime | None


def class_move(history: Sequence[Mapping[str, Any]]) -> ClassMove | None:
    """From :func:`class_history` (sorted); None when no class is known."""
    if not history:
        return None
    first = history[0]["from_class"] or history[0]["to_class"]
    rank = CLASSES.index
    highest, naik_kelas_at = first, None
    for change in history:
        to = change["to_class"]
        highest = max(highest, to, key=rank)
        if naik_kelas_at is None and rank(to) > rank(first):
            naik_kelas_at = change["at"]
    return ClassMove(first, highest, history[-1]["to_class"], naik_kelas_at)


def stages_of(journey: Mapping[str, Any]) -> dict[str, datetime]:
    """The stages reached and when, ``naik-kelas`` (derived from the class history) too."""
    stages = dict(journey.get("stages") or {})
    move = class_move(class_history(journey))
    if move is not None and move.naik_kelas_at is not None:
        stages[NAIK_KELAS] = move.naik_kelas_at
    return stages


def present(journey: Mapping[str, Any]) -> dict[str, Any]:
    """A journey as ``GET /participants/{id}/journey`` shows it: its stages (naik kelas
    too), the class history in order with the class now, and financing approved."""
    shown = dict(journey)
    history = class_history(journey)
    move = class_move(history)
    shown["stages"] = stages_of(journey)
    shown["class_history"] = history
    shown["business_class"] = move.now if move else None
    approvals = journey.get("financing_approvals") or []
    shown["financing_approved_idr"] = sum(a["amount_idr"] for a in approvals)
    return shown


def _days(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86400


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def funnel(journeys: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Over the journeys given (already filtered): counts per stage in programme order,
    conversion from the stage each comes after, the median days from that stage to this
    one and (main line) to the next; the side stages; the outcomes; registrations per
    month."""
    names = [s.name for s in STAGES]
    counts = dict.fromkeys((*names, *SIDE_STAGES), 0)
    from_previous: dict[str, list[float]] = {name: [] for name in names}
    to_next: dict[str, list[float]] = {name: [] for name in FUNNEL[:-1]}
    next_of = dict(itertools.pairwise(FUNNEL))
    transitions: Counter[tuple[str, str]] = Counter()
    classes_now: Counter[str] = Counter()
    months: Counter[str] = Counter()
    exported_products = financed_idr = total = 0
    for journey in journeys:
        total += 1
        history = class_history(journey)
        move = class_move(history)
        stages = dict(journey.get("stages") or {})
        if move is not None:
            classes_now[move.now] += 1
            if move.naik_kelas_at is not None:
                stages[NAIK_KELAS] = move.naik_kelas_at
                transitions[(move.first, move.highest)] += 1
        for name in counts:
            counts[name] += name in stages
        for stage in STAGES:
            if stage.after and stage.name in stages and stage.after in stages:
                from_previous[stage.name].append(_days(stages[stage.after], stages[stage.name]))
        for here, after in next_of.items():
            if here in stages and after in stages:
                to_next[here].append(_days(stages[here], stages[after]))
        month = (journey.get("profile") or {}).get("registered_month")
        if month:
            months[month] += 1
        exported_products += len(journey.get("exported_products") or [])
        financed_idr += sum(a["amount_idr"] for a in journey.get("financing_approvals") or [])
    rows = []
    for stage in STAGES:
        count = counts[stage.name]
        conversion: float | None = None
        if stage.after is not None:
            base = counts[stage.after]
            conversion = round(count / base, 4) if base else 0.0
        rows.append(
            {
                "stage": stage.name,
                "step": stage.step,
                "after": stage.after,
                "main": stage.main,
                "count": count,
                "conversion": conversion,
                "median_days_from_previous": _median(from_previous[stage.name]),
                "median_days_to_next": _median(to_next.get(stage.name, [])),
            }
        )
    return {
        "participants": total,
        "stages": rows,
        "side_stages": {stage: counts[stage] for stage in SIDE_STAGES},
        "outcomes": {
            "naik_kelas": {
                "participants": counts[NAIK_KELAS],
                "transitions": [
                    {"from_class": first, "to_class": to, "participants": n}
                    for (first, to), n in sorted(
                        transitions.items(),
                        key=lambda item: (CLASSES.index(item[0][0]), CLASSES.index(item[0][1])),
                    )
                ],
            },
            "business_classes": {c: classes_now[c] for c in CLASSES},
            "export_facilitated": {
                "participants": counts["export-facilitated"],
                "products": exported_products,
            },
            "financing_approved": {
                "participants": counts["financing-approved"],
                "total_idr": financed_idr,
            },
        },
        "registrations_per_month": [
            {"month": month, "participants": months[month]} for month in sorted(months)
        ],
    }


def parse_filters(
    query: Mapping[str, str], scope: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The funnel's query parameters as a MongoDB match on the journey's profile, held to
    the caller's ``scope`` (which shared.auth.narrow has checked the query against)."""
    match: dict[str, Any] = {}
    for name in FILTERS:
        value = query.get(name)
        if value in (None, ""):
            continue
        if name == "has_business":
            match["profile.has_business"] = value.lower() in ("1", "true", "yes", "ya")
        else:
            match[f"profile.{name}"] = value
    match.update({SCOPE_FIELDS[name]: value for name, value in (scope or {}).items()})
    return match
